import pytest

import data_catalog
from data_catalog import CatalogError, load_catalog

from ..conftest import write_catalog

GOOD = {
    "kind": "weatherbench",
    "source": {"pattern": "x/*.nc"},
    "variables": [{"name": "t2m"}],
    "time_step": "1h",
    "splits": {"train": {"rest": True}, "validation": {"last": "7D"}, "test": {"last": "7D"}},
    "window": {"input": 12, "output": 12},
    "store": "x.zarr",
}


def test_shipped_catalog_has_the_required_entries():
    cat = load_catalog()
    names = {e.name for e in cat}
    assert {"weatherbench-t2m-5.625deg", "taxibj", "era5-uk-t2m", "nybike"} <= names
    multi = [e for e in cat if e.kind == "weatherbench" and len(e.channel_names()) > 1]
    assert multi and any(v.levels for v in multi[0].variables)
    wb = cat["weatherbench-t2m-5.625deg"]
    assert (wb.window.input, wb.window.output, wb.time_step, wb.grid) == (12, 12, "1h", (32, 64))
    assert str(wb.splits.train.start) == "2010-01-01" and str(wb.splits.test.end) == "2018-12-31"
    bj = cat["taxibj"]
    assert (bj.window.input, bj.window.output) == (4, 4) and bj.splits.test.last == "28D"
    assert bj.incomplete_days in ("keep", "drop") and bj.holidays


def test_bundled_samples_resolve_to_real_files():
    for name in ("era5-uk-t2m", "nybike"):
        e = load_catalog()[name]
        root = data_catalog.source_root(e)
        assert list(root.glob(e.source.pattern)), name
    assert (data_catalog.BUNDLED_ROOT / "README.md").is_file()


@pytest.mark.parametrize(
    "change, field, reason",
    [
        ({"time_step": "hourly"}, "time_step", "not a time step"),
        ({"kind": "grib"}, "kind", "weatherbench"),
        ({"window": {"input": 0, "output": 12}}, "window.input", "greater than or equal to 1"),
        ({"splits": {"train": {"start": "2010-01-01"}, "validation": {"last": "7D"}, "test": {"last": "7D"}}},
         "splits.train", "needs both start and end"),
        ({"splits": {"train": {"rest": True, "last": "3D"}, "validation": {"last": "7D"}, "test": {"last": "7D"}}},
         "splits.train", "either start/end, or last"),
        ({"splits": {"train": {"rest": True}, "validation": {"last": "soon"}, "test": {"last": "7D"}}},
         "splits.validation", "positive duration"),
        ({"kind": "taxibj"}, "(entry)", "inflow and outflow"),
        ({"colour": "red"}, "colour", "Extra inputs"),
        ({"extent": {"lat": [60, 50], "lon": [0, 1]}}, "extent.lat", "latitude range"),
    ],
)
def test_malformed_entry_names_field_and_reason(tmp_path, change, field, reason):
    path = write_catalog(tmp_path / "cat.yaml", {"bad": {**GOOD, **change}})
    with pytest.raises(CatalogError) as e:
        load_catalog(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(path) in msg and "'bad'" in msg and f"field {field}" in msg and reason in msg


def test_missing_field_and_bad_yaml(tmp_path):
    body = {k: v for k, v in GOOD.items() if k != "store"}
    with pytest.raises(CatalogError, match="field store: Field required"):
        load_catalog(write_catalog(tmp_path / "a.yaml", {"x": body}))
    (tmp_path / "b.yaml").write_text("datasets: [unclosed")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(tmp_path / "b.yaml")
    with pytest.raises(CatalogError, match="catalog file not found"):
        load_catalog(tmp_path / "missing.yaml")


def test_unknown_name_lists_known(tmp_path):
    cat = load_catalog(write_catalog(tmp_path / "cat.yaml", {"one": GOOD}))
    with pytest.raises(CatalogError, match=r"no data set named 'two' \(known: one\)"):
        cat["two"]


def test_roots_follow_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMCAST_DATA_ROOT", "/archive")
    monkeypatch.setenv("SIMCAST_STORE_ROOT", str(tmp_path / "s"))
    e = load_catalog()["weatherbench-t2m-5.625deg"]
    assert str(data_catalog.source_root(e)) == "/archive"
    assert data_catalog.store_path(e) == tmp_path / "s" / "weatherbench-t2m-5.625deg.zarr"
