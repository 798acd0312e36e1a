"""Streamed windows: the same samples as in memory, every sample once an epoch, each block read once an epoch,
reproducible chunk-aware order, errors and early stops that end the background threads."""

import threading

import numpy as np
import pytest
import torch

from data_catalog import load_catalog
from pipelines import ingest as ingest_stage
from pipelines import streaming, windows
from pipelines.errors import StoreError
from pipelines.windows import WindowSpec, Windows
from simvp.trainer import TrainConfig, iter_batches, train

from .test_windows import era5_store_path

SPEC = WindowSpec(input=12, output=12, time_features=True)
CHUNK = load_catalog()["era5-uk-t2m"].window.length  # with CHUNK_BYTES 1 a chunk holds one catalog window


@pytest.fixture
def chunked_store(real_data, monkeypatch):
    """The ERA5 sample stored in chunks of one catalog window (e.g. 73 frames: 11 chunks), in blocks of one chunk
    and shuffle groups of three blocks (of the 24-frame windows of SPEC)."""
    monkeypatch.setattr(ingest_stage, "CHUNK_BYTES", 1)
    monkeypatch.setattr(streaming, "BLOCK_WINDOWS", 1)
    frame_bytes = 4 * 33 * 49
    monkeypatch.setattr(windows, "GROUP_BYTES", 3 * frame_bytes * (CHUNK + SPEC.length - 1))
    return era5_store_path(real_data)


def batches_of(order, size):
    return list(order.split(size))


def test_streamed_epoch_gives_every_in_memory_sample_once(chunked_store):
    mem = Windows(chunked_store, "train", SPEC, in_memory=True)
    stream = Windows(chunked_store, "train", SPEC, in_memory=False)
    assert stream._read.chunk == CHUNK and stream.block == CHUNK and stream.group_blocks == 3
    order = stream.epoch_order(seed=1, epoch=0)
    assert sorted(order.tolist()) == list(range(len(mem)))
    seen = 0
    for index, (x, y) in zip(batches_of(order, 16), stream.batches(batches_of(order, 16))):
        mx, my = mem.batch(index)
        torch.testing.assert_close(x, mx, rtol=0, atol=0)  # time features included
        torch.testing.assert_close(y, my, rtol=0, atol=0)
        seen += len(index)
    assert seen == len(mem)


def test_chunk_aware_order_is_reproducible_and_local(chunked_store):
    stream = Windows(chunked_store, "train", SPEC, in_memory=False)
    a, b = stream.epoch_order(1, 0), stream.epoch_order(1, 0)
    assert torch.equal(a, b)
    assert not torch.equal(a, stream.epoch_order(1, 1)) and not torch.equal(a, stream.epoch_order(2, 0))
    blocks = (stream.starts[a.numpy()] - stream.origin) // stream.block
    # the order runs through groups of three blocks, each group's samples interleaved (not block after block)
    n_blocks = len(np.unique(blocks))
    i, groups = 0, 0
    while i < len(blocks):
        members = set()
        j = i
        while j < len(blocks) and (blocks[j] in members or len(members) < 3):
            members.add(blocks[j])
            j += 1
        switches = int((np.diff(blocks[i:j]) != 0).sum())
        assert switches > len(members) - 1 or len(members) == 1
        groups += 1
        i = j
    assert groups == -(-n_blocks // 3)


def test_each_block_is_read_once_an_epoch(chunked_store, monkeypatch):
    stream = Windows(chunked_store, "train", SPEC, in_memory=False)
    reads = []
    load = stream._load_block
    monkeypatch.setattr(stream, "_load_block", lambda b: reads.append(b) or load(b))
    order = stream.epoch_order(3, 0)
    for _ in stream.batches(batches_of(order, 16)):
        pass
    n_blocks = len(np.unique((stream.starts - stream.origin) // stream.block))
    assert sorted(reads) == sorted(set(reads)) and len(reads) == n_blocks


def test_a_read_error_reaches_the_consumer_and_the_threads_end(chunked_store, monkeypatch):
    stream = Windows(chunked_store, "train", SPEC, in_memory=False)
    before = threading.active_count()

    def broken(b):
        raise StoreError(chunked_store, "damaged store: array 'data' chunk c/5/0/0/0 is corrupt")

    monkeypatch.setattr(stream, "_load_block", broken)
    with pytest.raises(StoreError, match="chunk c/5/0/0/0"):
        for _ in stream.batches(batches_of(stream.epoch_order(1, 0), 16)):
            pass
    assert threading.active_count() == before


def test_a_consumer_that_stops_early_ends_the_threads(chunked_store):
    stream = Windows(chunked_store, "train", SPEC, in_memory=False)
    before = threading.active_count()
    it = stream.batches(batches_of(stream.epoch_order(1, 0), 4))
    next(it)
    it.close()
    assert threading.active_count() == before


def test_a_corrupt_chunk_read_while_streaming_is_one_line(chunked_store):
    chunk = next(p for p in sorted((chunked_store / "data").rglob("*")) if p.is_file() and p.name == "0"
                 and p.parent.parent.parent.name == "3")
    stream = Windows(chunked_store, "train", SPEC, in_memory=False)
    chunk.write_bytes(chunk.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(StoreError, match="chunk c/3/0/0/0 is corrupt"):
        for _ in stream.batches(batches_of(torch.arange(len(stream)), 16)):
            pass


def test_evaluation_batches_in_order_equal_single_batches(chunked_store):
    stream = Windows(chunked_store, "validation", SPEC, in_memory=False)
    mem = Windows(chunked_store, "validation", SPEC, in_memory=True)
    index_batches = batches_of(torch.arange(len(stream)), 7)
    for index, (x, y) in zip(index_batches, iter_batches(stream, index_batches)):
        torch.testing.assert_close(x, mem.batch(index)[0], rtol=0, atol=0)


@pytest.mark.slow
def test_training_on_streamed_windows_is_reproducible(chunked_store, tmp_path):
    from simvp import SimVP, SimVPConfig
    from simvp.trainer import seed_everything

    def run(out):
        train_w = Windows(chunked_store, "train", SPEC, in_memory=False)
        val_w = Windows(chunked_store, "validation", SPEC, in_memory=False)
        seed_everything(5)
        model = SimVP(SimVPConfig(in_shape=train_w.shape, hid_S=4, hid_T=8, N_S=2, N_T=2, out_frames=12))
        config = TrainConfig(epochs=1, batch_size=16, lr=1e-3, seed=5, deterministic=True,
                             max_steps_per_epoch=6, schedule="constant")
        result = train(model, train_w, val_w, config, out, meta={})
        return result, model

    r1, m1 = run(tmp_path / "a")
    r2, m2 = run(tmp_path / "b")
    assert r1.best_val_loss == r2.best_val_loss
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)
