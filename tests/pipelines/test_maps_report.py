"""Cartopy maps and the forecast report, on forecasts built from the real ERA5 and NYBike samples, offline."""

from __future__ import annotations

import re
import socket
from html.parser import HTMLParser
from pathlib import Path

import cartopy
import cartopy.io
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image

from pipelines.report import maps
from pipelines.forecast.output import forecast_dataset, write_forecast
from pipelines.report.maps import ProjectionError, lead_metrics_plot, render_forecast_maps
from pipelines.errors import OutputError, UsageError
from pipelines.report import write_report

from .test_forecast_io import era5_store, nybike_store, persistence_forecast  # noqa: F401  (fixtures)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Maps must never fetch Natural Earth (or anything else): any connection attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(cartopy.io.Downloader, "acquire_resource", refuse)


def _check_png(path: Path, panels: int | None = None) -> np.ndarray:
    """A real PNG with visible content; its width matches the layout for `panels` panels."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        width, height = im.size
        pixels = np.asarray(im.convert("RGB"), dtype=float) / 255
    if panels is not None:
        pw = max(maps.PANEL_INCHES, (6.5 - maps._LEFT - maps._RIGHT) / panels)
        expected = (maps._LEFT + panels * pw + (panels - 1) * maps._GAP + maps._RIGHT) * maps.DPI
        assert abs(width - expected) <= 1
    assert 200 < height < 2000
    assert pixels.std() > 0.1
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200  # a colour field, not a blank or flat image
    return pixels


def _global_store(n_lat=16, n_lon=32) -> xr.Dataset:
    """A small WeatherBench-like global store (0..360 longitudes) in memory."""
    lat = np.linspace(-90 + 90 / n_lat, 90 - 90 / n_lat, n_lat)
    lon = np.arange(n_lon) * 360 / n_lon
    times = pd.date_range("2018-01-01", periods=8, freq="6h")
    glat, glon = np.meshgrid(lat, lon, indexing="ij")
    field = 288 - 40 * np.sin(np.deg2rad(glat)) ** 2 + 5 * np.cos(np.deg2rad(glon))
    data = np.stack([field + k for k in range(8)])[:, None].astype("float32")
    return xr.Dataset(
        {"data": (("time", "channel", "lat", "lon"), data)},
        coords={"time": times, "channel": ["t2m"], "variable": ("channel", ["t2m"]), "level": ("channel", [0]),
                "units": ("channel", ["K"]), "standard_name": ("channel", ["air_temperature"]),
                "long_name": ("channel", ["2 metre temperature"]), "lat": lat, "lon": lon},
        attrs={"dataset": "synthetic-global", "kind": "weatherbench", "time_step": "6h", "extent": "null"})


METRICS = {
    "model": {"rmse": 1.21, "mae": 0.93, "rmse_weighted": 1.18,
              "by_lead": {"rmse": list(np.linspace(0.6, 1.9, 12)), "mae": list(np.linspace(0.5, 1.4, 12))}},
    "persistence": {"rmse": 2.77, "mae": 2.1, "rmse_weighted": 2.7,
                    "by_lead": {"rmse": list(np.linspace(0.9, 4.1, 12)), "mae": list(np.linspace(0.7, 3.2, 12))}},
    "climatology": {"rmse": 3.05, "mae": 2.4, "by_lead": {"rmse": [3.05] * 12}},
    "previous_day": {"rmse": 1.41, "mae": 1.1, "by_lead": {"rmse": list(1.41 + 0.1 * np.sin(np.arange(12)))}},
    "units": "K",
}


# ---- maps ----------------------------------------------------------------------------------------

def test_era5_map_has_all_panels_and_coastlines(era5_store, tmp_path):
    fc = persistence_forecast(era5_store)
    paths = render_forecast_maps(fc, tmp_path / "maps", truth=era5_store, leads=[6])
    assert paths == [tmp_path / "maps" / "t2m_lead06h.png"]
    _check_png(paths[0], panels=4)  # observed, forecast, truth, error
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["t2m_lead06h.png"]  # no temporaries


def test_era5_map_without_truth_is_forecast_only(era5_store, tmp_path):
    fc = persistence_forecast(era5_store, n_init=1, n_lead=2)
    (path,) = render_forecast_maps(fc, tmp_path, leads="2h", projection="LambertConformal")
    assert path.name == "t2m_lead02h.png"
    _check_png(path, panels=1)


def test_nybike_map_on_its_grid(nybike_store, tmp_path):
    fc = persistence_forecast(nybike_store, n_lead=4, spacing=2)
    paths = render_forecast_maps(fc, tmp_path, truth=nybike_store, leads=[0.5], variables=["inflow"])
    assert [p.name for p in paths] == ["inflow_lead00h30m.png"]
    _check_png(paths[0], panels=4)


def test_traffic_grid_without_coordinates_draws_rows_and_columns(nybike_store, tmp_path):
    fc = persistence_forecast(nybike_store, n_init=1, n_lead=2).drop_vars(["lat", "lon", "crs", "lat_bnds",
                                                                           "lon_bnds"])
    store = nybike_store.drop_vars(["lat", "lon"])
    (path,) = render_forecast_maps(fc, tmp_path, truth=store, leads=["60min"], variables="outflow")
    assert path.name == "outflow_lead01h.png"
    _check_png(path, panels=4)


def test_robinson_global_map(tmp_path):
    store = _global_store()
    noise = np.random.default_rng(0).normal(size=(1, 2, *store["data"].shape[1:]))
    values = store["data"].values[3:5][None] + noise  # two leads from the third step on
    fc = forecast_dataset(values, store["time"].values[2:3], np.array([6, 12], dtype="timedelta64[h]"), store, {})
    (path,) = render_forecast_maps(fc, tmp_path, truth=store, leads=[12], projection="Robinson")
    _check_png(path, panels=4)


def test_unknown_projection_is_a_clear_error(era5_store, tmp_path):
    fc = persistence_forecast(era5_store, n_init=1, n_lead=1)
    with pytest.raises(ProjectionError, match="unknown projection 'Mercury'.*Robinson") as e:
        render_forecast_maps(fc, tmp_path / "maps", projection="Mercury")
    assert isinstance(e.value, UsageError) and e.value.option == "projection" and "\n" not in str(e.value)
    assert not (tmp_path / "maps").exists()
    assert maps.get_projection("robinson").__class__.__name__ == "Robinson"  # names are case-insensitive
    with pytest.raises(ProjectionError, match="UTM cannot be built"):
        maps.get_projection("UTM")


def test_unknown_lead_or_variable(era5_store, tmp_path):
    fc = persistence_forecast(era5_store, n_init=1, n_lead=3)
    with pytest.raises(UsageError, match=r"lead time \+5 h is not in the forecast \(it has \+1 h, \+2 h, \+3 h\)"):
        render_forecast_maps(fc, tmp_path, leads=[5])
    with pytest.raises(UsageError, match="not in the forecast"):
        render_forecast_maps(fc, tmp_path, variables=["z500"])
    assert maps.select_leads(fc) == [0, 1, 2]


def test_missing_natural_earth_warns_and_still_draws(era5_store, tmp_path, monkeypatch):
    empty = tmp_path / "no_data"
    empty.mkdir()
    monkeypatch.setitem(cartopy.config, "pre_existing_data_dir", empty)
    monkeypatch.setitem(cartopy.config, "data_dir", empty)
    monkeypatch.setattr(maps, "NATURAL_EARTH_DIR", empty)
    fc = persistence_forecast(era5_store, n_init=1, n_lead=1)
    with pytest.warns(UserWarning, match="Natural Earth 50m coastline not found.*gridlines only"):
        (path,) = render_forecast_maps(fc, tmp_path / "maps", truth=era5_store)
    _check_png(path, panels=4)


def test_bundled_natural_earth_is_used(monkeypatch):
    physical = maps.NATURAL_EARTH_DIR / "shapefiles" / "natural_earth" / "physical"
    for res in ("50m", "110m"):
        assert (physical / f"ne_{res}_coastline.shp").is_file()
    # import pointed cartopy at the bundled copy (no CARTOPY_DATA_DIR in the test environment)...
    monkeypatch.delenv("CARTOPY_DATA_DIR", raising=False)
    monkeypatch.setitem(cartopy.config, "pre_existing_data_dir", Path(""))
    maps._configure_cartopy()
    assert cartopy.config["pre_existing_data_dir"] == maps.NATURAL_EARTH_DIR
    assert maps._coastline_file("50m") == physical / "ne_50m_coastline.shp"
    # ...but a directory the user chose is left alone
    monkeypatch.setitem(cartopy.config, "pre_existing_data_dir", Path("/opt/my_cartopy_data"))
    maps._configure_cartopy()
    assert cartopy.config["pre_existing_data_dir"] == Path("/opt/my_cartopy_data")


def test_lead_metrics_plot(tmp_path):
    path = lead_metrics_plot(METRICS, tmp_path / "m.png", lead_hours=list(range(1, 13)))
    assert path == tmp_path / "m.png"
    _check_png(path)
    with pytest.raises(ValueError, match="per-lead 'acc'"):
        lead_metrics_plot(METRICS, tmp_path / "acc.png", metric="acc")


# ---- report --------------------------------------------------------------------------------------

class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("src", "href") and v]


def test_report_html_and_markdown(era5_store, tmp_path):
    fc = persistence_forecast(era5_store)
    paths = write_forecast(fc, tmp_path / "forecasts" / "era5", formats=("netcdf",))
    out = tmp_path / "report"
    result = write_report(paths["netcdf"], out, truth_store=era5_store.encoding["source"], metrics=METRICS,
                          leads=[6])
    assert result["html"] == out / "report.html" and result["markdown"] == out / "report.md"
    assert result["maps"] == [out / "maps" / "t2m_lead06h.png"]
    assert result["metrics_plot"] == out / "metrics_rmse.png"
    for p in [*result["maps"], result["metrics_plot"]]:
        _check_png(p)

    parser = _Links()
    parser.feed(result["html"].read_text())
    assert len(parser.links) >= 4  # map and metrics plot, each an img and a link
    for link in parser.links:
        assert not re.match(r"^(/|[a-z]+:)", link), link  # relative: the folder can be moved or served
        assert (out / link).is_file(), link

    md = result["markdown"].read_text()
    assert "| forecaster | RMSE [K] | RMSE (area-weighted) [K] | MAE [K] |" in md
    assert "| model | **1.21** | **1.18** | **0.93** |" in md
    assert "| persistence | 2.77 | 2.7 | 2.1 |" in md
    assert "| previous day | 1.41 |  | 1.1 |" in md
    assert "runs/era5/best.safetensors" in md and "era5-uk-t2m" in md
    assert "2019-03-31 11:00" in md  # the init time of the maps
    for link in re.findall(r"\]\(([^)]+)\)", md):
        assert (out / link).is_file(), link

    # a second report replaces the first whole, with nothing left beside it
    again = write_report(paths["netcdf"], out, truth_store=era5_store, leads=[1])
    assert again["maps"] == [out / "maps" / "t2m_lead01h.png"] and again["metrics_plot"] is None
    assert sorted(p.name for p in (out / "maps").iterdir()) == ["t2m_lead01h.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forecasts", "report"]
    assert "## Metrics" not in again["markdown"].read_text()


def _evaluate_style(rmse: float, psnr) -> dict:
    """One forecaster as pipelines.evaluate writes it to metrics.json (nulls for undefined, "inf" strings)."""
    by_lead = {"rmse": [rmse * (1 + k / 4) for k in range(4)], "mae": [rmse / 2] * 4, "acc": [None] * 4}
    return {"rmse": rmse, "mae": rmse / 2, "acc": None, "mse_paper": rmse / 10, "ssim": 0.8, "psnr": psnr,
            "by_lead": by_lead, "by_channel": {"inflow": {"rmse": rmse, "by_lead": by_lead}},
            "samples": 96, "convention": "RMSE = sqrt(mean squared error ...)"}


def test_report_for_traffic_without_truth(nybike_store, tmp_path):
    fc = persistence_forecast(nybike_store, n_init=1, n_lead=4)
    paths = write_forecast(fc, tmp_path / "nybike", formats=("zarr",))
    metrics = {"model": _evaluate_style(3.5, 31.2), "persistence": _evaluate_style(4.8, "inf"),
               "previous_day": _evaluate_style(6.0, 25.0), "climatology": _evaluate_style(5.1, 27.0)}
    result = write_report(paths["zarr"], tmp_path / "rep", leads=["2h"], metrics=metrics)
    assert [p.name for p in result["maps"]] == ["inflow_lead02h.png", "outflow_lead02h.png"]
    _check_png(result["metrics_plot"])
    md = result["markdown"].read_text()
    assert "none (forecast panels only)" in md
    # units from the forecast; paper metrics on [0, 1] data carry none; higher is better for SSIM/PSNR
    assert "| forecaster | RMSE [flows per slot] | MAE [flows per slot] | MSE (paper) | SSIM | PSNR |" in md
    assert "| model | **3.5** | **1.75** | **0.35** | 0.8 | 31.2 |" in md
    assert "| persistence | 4.8 | 2.4 | 0.48 | 0.8 | **inf** |" in md
    assert md.index("| persistence") < md.index("| previous day") < md.index("| climatology")


def test_report_refuses_a_folder_that_is_not_a_report(era5_store, tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("months of work")
    fc = persistence_forecast(era5_store, n_init=1, n_lead=1)
    with pytest.raises(OutputError, match="is a folder, not a simcast report"):
        write_report(fc, precious)
    assert (precious / "thesis.tex").read_text() == "months of work"


def test_the_report_says_at_which_leads_the_model_is_behind():
    from pipelines.report.tables import skill_summary

    metrics = {"model": {"by_lead": {"rmse": [1, 2, 3, 4, 5, 6]}},
               "persistence": {"by_lead": {"rmse": [0.5, 3, 4, 5, 6, 7]}},
               "previous_day": {"by_lead": {"rmse": [2, 2, 2.5, 2, 9, 2]}},
               "climatology": {"by_lead": {"rmse": [9] * 6}}}
    assert skill_summary(metrics, "rmse", [0.5, 1, 1.5, 2, 2.5, 3]) == [
        "The model is behind persistence at +30 min (RMSE).",
        "The model is behind the previous day at +1 h 30 min to +2 h, +3 h (RMSE).",
        "The model is not behind climatology at any lead (RMSE)."]
    hours = list(range(1, 49))
    series = {"model": [2.0] * 48, "persistence": [3.0] * 48}
    for i in (0, 22, 23, 24, 25, 26, 45, 46, 47):
        series["persistence"][i] = 1.0
    two_days = {k: {"by_lead": {"rmse": v}} for k, v in series.items()}
    assert skill_summary(two_days, "rmse", hours) == [
        "The model is behind persistence at +1 h, +23 h to +27 h, +46 h to +48 h (RMSE)."]
    acc = {"model": {"by_lead": {"acc": [0.9, 0.5]}}, "persistence": {"by_lead": {"acc": [0.95, 0.4]}}}
    assert skill_summary(acc, "acc", [1, 2]) == ["The model is behind persistence at +1 h (ACC)."]
    # with intervals, which differences are significant: "better" only where the interval supports it
    acc["model"]["versus"] = {"persistence": {"acc": {"significant": [0, 1]}}}
    assert skill_summary(acc, "acc", [1, 2]) == [
        "The model is behind persistence at +1 h (ACC); significantly better at +2 h (95% block-bootstrap interval)."]
    acc["model"]["versus"]["persistence"]["acc"]["significant"] = [-1, 0]
    assert skill_summary(acc, "acc", [1, 2]) == [
        "The model is behind persistence at +1 h (ACC); significantly worse at +1 h (95% block-bootstrap interval)."]
    acc["model"]["versus"]["persistence"]["acc"]["significant"] = [0, 0]
    assert skill_summary(acc, "acc", [1, 2])[0].endswith("no difference is significant (95% block-bootstrap interval).")


def test_lead_plot_marks_the_trained_horizon(tmp_path, monkeypatch):
    from pipelines.report import maps

    drawn = []  # (x label, {line label: first x}) of each plot, read before _save renders and clears the figure

    def look(fig, path):
        ax = fig.axes[0]
        drawn.append((ax.get_xlabel(), {ln.get_label(): ln.get_xdata()[0] for ln in ax.lines}))
        return save(fig, path)

    save = maps._save
    monkeypatch.setattr(maps, "_save", look)
    metrics = {name: {"by_lead": {"rmse": list(np.linspace(1, 3, 48))}, "lead_hours": list(range(1, 49)),
                      "trained_hours": 12} for name in ("model", "persistence")}
    assert lead_metrics_plot(metrics, tmp_path / "m.png").stat().st_size > 0
    xlabel, lines = drawn[-1]
    assert xlabel == "lead time (hours)"
    assert lines["trained horizon (12 h); rollout beyond"] == 12
    # half-hourly leads within 3 h are shown in minutes, the horizon too
    half = {name: {"by_lead": {"rmse": [1, 2, 3, 4, 5, 6]}, "lead_hours": [0.5, 1, 1.5, 2, 2.5, 3],
                   "trained_hours": 2} for name in ("model", "persistence")}
    lead_metrics_plot(half, tmp_path / "h.png")
    xlabel, lines = drawn[-1]
    assert xlabel == "lead time (minutes)" and lines["trained horizon (120 min); rollout beyond"] == 120
    with pytest.raises(ValueError, match="per-lead 'mae'"):
        lead_metrics_plot(metrics, tmp_path / "n.png", metric="mae")
