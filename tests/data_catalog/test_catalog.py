import pytest

import yaml

import data_catalog
from data_catalog import CatalogError, load_catalog
from pipelines.settings import Settings

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
    assert str(wb.splits.train.start) == "1979-01-01" and str(wb.splits.test.end) == "2018-12-31"  # the paper's
    openstl = cat["weatherbench-t2m-5.625deg-openstl"]
    assert str(openstl.splits.train.start) == "2010-01-01" and openstl.splits.test == wb.splits.test
    bj = cat["taxibj"]
    assert (bj.window.input, bj.window.output) == (4, 4) and bj.splits.test.last == "28D"
    assert bj.incomplete_days in ("keep", "drop") and bj.holidays


def test_bundled_samples_resolve_to_real_files():
    for name in ("era5-uk-t2m", "nybike"):
        e = load_catalog()[name]
        root = Settings.load().source_root(e)
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
        load_catalog(path, bundled=False)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(path) in msg and "'bad'" in msg and f"field {field}" in msg and reason in msg


def test_missing_field_and_bad_yaml(tmp_path):
    body = {k: v for k, v in GOOD.items() if k != "store"}
    with pytest.raises(CatalogError, match="field store: Field required"):
        load_catalog(write_catalog(tmp_path / "a.yaml", {"x": body}))
    (tmp_path / "b.yaml").write_text("datasets:\n  x: {kind: taxibj,\n  y: [unclosed\n")
    with pytest.raises(CatalogError, match=r"b.yaml: not valid YAML at line \d+, column \d+"):
        load_catalog(tmp_path / "b.yaml")
    with pytest.raises(CatalogError, match="catalog file not found"):
        load_catalog(tmp_path / "missing.yaml")


def test_unknown_name_lists_known(tmp_path):
    cat = load_catalog(write_catalog(tmp_path / "cat.yaml", {"one": GOOD}), bundled=False)
    with pytest.raises(CatalogError, match=r"no data set named 'two' \(known: one\)"):
        cat["two"]


def test_roots_follow_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMCAST_DATA_ROOT", "/archive")
    monkeypatch.setenv("SIMCAST_STORE_ROOT", str(tmp_path / "s"))
    monkeypatch.setenv("SIMCAST_RUNS_ROOT", str(tmp_path / "r"))
    settings = Settings.load()
    e = settings.entry("weatherbench-t2m-5.625deg")
    assert str(settings.source_root(e)) == "/archive"
    assert settings.store_path(e) == tmp_path / "s" / "weatherbench-t2m-5.625deg.zarr"
    assert settings.new_run_dir("x").parent == tmp_path / "r"
    assert Settings.load(runs_root=tmp_path / "explicit").runs_root == tmp_path / "explicit"  # arguments win


def test_a_users_catalog_adds_to_and_overrides_the_bundled_one(monkeypatch, tmp_path):
    mine = write_catalog(tmp_path / "mine.yaml", {"one": GOOD, "nybike": {**GOOD, "store": "my-nybike.zarr"}})
    monkeypatch.setenv("SIMCAST_CATALOG", str(mine))
    cat = Settings.load().catalog()
    assert {"one", "era5-uk-t2m", "taxibj"} <= set(cat.entries)  # added to the bundled entries
    assert cat["nybike"].store == "my-nybike.zarr" and cat.origins["nybike"] == mine  # overridden
    assert cat.origins["era5-uk-t2m"] == data_catalog.DEFAULT_CATALOG


def test_catalog_show_prints_yaml_that_loads_back_to_the_same_entry(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipelines.cli import app

    monkeypatch.setenv("COLUMNS", "40")  # a narrow terminal must not wrap the YAML
    for name in ("era5-uk-t2m", "nybike", "weatherbench-multi-5.625deg"):
        shown = CliRunner().invoke(app, ["catalog", "show", name])
        assert shown.exit_code == 0, shown.output
        (tmp_path / "copy.yaml").write_text(shown.stdout)
        assert yaml.safe_load(shown.stdout)["datasets"][name]
        assert data_catalog.read_entries(tmp_path / "copy.yaml")[name] == load_catalog()[name]


def test_an_entry_or_field_named_twice_is_refused_with_its_lines(tmp_path):
    (tmp_path / "twice.yaml").write_text("datasets:\n  a:\n    kind: taxibj\n  b:\n    kind: taxibj\n"
                                         "  a:\n    kind: weatherbench\n")
    with pytest.raises(CatalogError) as e:
        load_catalog(tmp_path / "twice.yaml")
    assert str(e.value) == (f"{tmp_path / 'twice.yaml'}: entry 'a' appears twice (lines 2 and 6); YAML would keep "
                            "the last one silently: remove or rename one")
    (tmp_path / "field.yaml").write_text("datasets:\n  a:\n    kind: taxibj\n    epochs: 1\n    kind: weatherbench\n")
    with pytest.raises(CatalogError, match=r"field.yaml: key 'kind' appears twice in one mapping \(lines 3 and 5\)"):
        load_catalog(tmp_path / "field.yaml")
    # the same keys in different mappings are fine
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump({"datasets": {"x": {**GOOD}, "y": {**GOOD}}}))
    assert set(load_catalog(tmp_path / "ok.yaml", bundled=False).entries) == {"x", "y"}
