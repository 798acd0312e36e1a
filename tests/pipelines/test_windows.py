"""Windows never cross gaps or split boundaries; in-memory and streamed samples are identical."""

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data_catalog import load_catalog

from pipelines.windows import WindowSpec, Windows, denormalize, normalize, split_windows, window_starts

from ..conftest import ingest

STEP = pd.Timedelta("1h")


def brute_force(times, in_split, spec):
    out = []
    for i in range(len(times) - spec.length + 1):
        frames = times[i:i + spec.length]
        consecutive = all(frames[k + 1] - frames[k] == STEP for k in range(spec.length - 1))
        on_grid = ((times[i] - times[0]) // STEP) % spec.stride == 0
        if consecutive and in_split[i:i + spec.length].all() and on_grid:
            out.append(i)
    return out


@settings(max_examples=150, deadline=None)
@given(
    present=st.lists(st.booleans(), min_size=1, max_size=80),
    split_cuts=st.tuples(st.integers(0, 80), st.integers(0, 80)),
    t_in=st.integers(1, 5), t_out=st.integers(1, 5), stride=st.integers(1, 3),
)
def test_windows_never_span_gaps_or_splits(present, split_cuts, t_in, t_out, stride):
    full = pd.date_range("2020-01-01", periods=len(present), freq="h")
    times = full[np.array(present)]
    if len(times) == 0:
        return
    a, b = sorted(split_cuts)
    in_split = np.zeros(len(times), bool)
    in_split[a:b] = True
    spec = WindowSpec(input=t_in, output=t_out, stride=stride)
    got = window_starts(times, STEP, in_split, spec)
    assert got.tolist() == brute_force(times, in_split, spec)
    for i in got:
        assert (np.diff(times[i:i + spec.length].as_unit("ns").asi8) == STEP.value).all()
        assert in_split[i:i + spec.length].all()


def era5_store_path(real_data):
    e = load_catalog()["era5-uk-t2m"]
    e = e.model_copy(update={"source": e.source.model_copy(update={
        "pattern": str(real_data / "weather/era5_uk_t2m_0.25deg/*.nc"), "root": "data"})})
    return ingest(e, progress=False).store


@pytest.fixture
def era5_store(real_data):
    return era5_store_path(real_data)


def test_sample_counts_per_split(era5_store):
    w = split_windows(era5_store, WindowSpec(input=12, output=12))
    # 480 / 96 / 168 hourly steps, windows of 24 steps
    assert [len(w[s]) for s in ("train", "validation", "test")] == [480 - 23, 96 - 23, 168 - 23]
    x, y = w["test"].batch(torch.tensor([0, 5]))
    assert x.shape == (2, 12, 1, 33, 49) and y.shape == (2, 12, 1, 33, 49)
    assert w["test"].times[w["test"].starts[0]] == pd.Timestamp("2019-03-25")


def test_in_memory_and_streamed_samples_are_identical(era5_store):
    mem = Windows(era5_store, "train", WindowSpec(input=12, output=12), in_memory=True)
    stream = Windows(era5_store, "train", WindowSpec(input=12, output=12), in_memory=False)
    stream._cache.chunk = 50  # force windows across chunk borders
    idx = torch.tensor([0, 1, 37, 199, 456, 250])
    for a, b in zip(mem.batch(idx), stream.batch(idx)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_normalized_with_training_statistics(era5_store):
    w = Windows(era5_store, "train", WindowSpec(input=12, output=12))
    x, _ = w.batch(torch.arange(len(w)))
    frames = w.ds["data"].sel(time=slice("2019-03-01", "2019-03-20")).values.astype("float64")
    assert abs(float(frames.mean()) - w.stats["mean"][0]) < 1e-6
    assert abs(float(x.mean())) < 0.05  # the training windows are near zero mean in normalized units
    test = Windows(era5_store, "test", WindowSpec(input=12, output=12))
    _, y = test.batch(torch.tensor([3]))
    phys = denormalize(y, test.stats, test.method)
    expected = test.ds["data"].values[test.starts[3] + 12:test.starts[3] + 24]
    torch.testing.assert_close(phys[0], torch.from_numpy(expected), rtol=0, atol=1e-4)
    arr = np.random.default_rng(0).random((3, 2, 4, 4)).astype("float32")
    stats = {"mean": [1.0, 2.0], "std": [2.0, 0.5], "min": [0.0, -1.0], "max": [1.0, 3.0]}
    for method in ("zscore", "minmax"):
        np.testing.assert_allclose(denormalize(normalize(arr, stats, method), stats, method), arr, atol=1e-6)


def test_time_features_are_extra_input_channels(real_data):
    e = load_catalog()["nybike"]
    e = e.model_copy(update={"source": e.source.model_copy(update={
        "pattern": str(real_data / "traffic/NYBike_M14x8_T30_InOut.h5"), "root": "data"})})
    store = ingest(e, progress=False).store
    w = Windows(store, "train", WindowSpec(input=4, output=4, time_features=True))
    x, y = w.batch(torch.tensor([0, 10]))
    assert x.shape == (2, 4, 2 + 4, 14, 8) and y.shape == (2, 4, 2, 14, 8)  # hour and weekday, sin/cos
    assert w.shape == (4, 6, 14, 8)
    weather = Windows(era5_store_path(real_data), "train", WindowSpec(input=12, output=12, time_features=True))
    assert weather.shape == (12, 1 + 2, 33, 49)  # hour of day only
    hour_sin = x[0, :, 2, 0, 0]
    t = w.times[w.starts[0]:w.starts[0] + 4]
    np.testing.assert_allclose(hour_sin.numpy(), np.sin(2 * np.pi * (t.hour + t.minute / 60) / 24), atol=1e-6)
