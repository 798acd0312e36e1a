"""The `simcast` command line: every pipeline stage, step by step."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import data_catalog
from data_catalog import CatalogError

from .errors import SimcastError

app = typer.Typer(help="simcast: gridded spatio-temporal forecasting (WeatherBench, TaxiBJ) with SimVP.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
catalog_app = typer.Typer(help="List and inspect the data sets of the catalog.", no_args_is_help=True)
synth_app = typer.Typer(help="Write synthetic data in the exact WeatherBench / TaxiBJ file layouts.",
                        no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(synth_app, name="synth")

console = out = Console()
err = Console(stderr=True)


def one_line_errors(fn):
    """Bad input ends the command with one line naming the file and the problem, and exit code 1
    (SIMCAST_DEBUG=1 shows the traceback instead)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (SimcastError, CatalogError, ValueError) as e:  # CheckpointError is a ValueError
            if os.environ.get("SIMCAST_DEBUG"):
                raise
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


@catalog_app.command("list")
@one_line_errors
def catalog_list() -> None:
    """One line per data set: name, kind, channels, grid, time step, window."""
    cat = data_catalog.load_catalog()
    table = Table(title=f"catalog {cat.path}")
    table.add_column("name", no_wrap=True)
    for col in ("kind", "channels", "grid", "step", "window"):
        table.add_column(col)
    for e in cat:
        grid = "x".join(map(str, e.grid)) if e.grid else "-"
        table.add_row(e.name, e.kind, ",".join(e.channel_names()), grid, e.time_step,
                      f"{e.window.input}->{e.window.output}")
    out.print(table)


@catalog_app.command("show")
@one_line_errors
def catalog_show(name: str) -> None:
    """The full entry of one data set, as YAML."""
    import yaml

    entry = data_catalog.get_entry(name)
    out.print(yaml.safe_dump({name: entry.model_dump(mode="json", exclude={"name"}, exclude_none=True)}, sort_keys=False))
    out.print(f"# source root: {data_catalog.source_root(entry)}   store: {data_catalog.store_path(entry)}")


def _print_summary(s: dict, skipped: bool) -> None:
    state = "is current, nothing to do" if skipped else "written"
    out.print(f"[bold]{s['dataset']}[/]: store {s['store']} {state}")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("time steps", f"{s['time_steps']} ({s['time_step']}) {s['start']} .. {s['end']}")
    table.add_row("missing", f"{s['missing_steps']} steps in {s['gaps']} gaps")
    table.add_row("dims", f"{tuple(s['dims'])}, grid {s['grid'][0]}x{s['grid'][1]}")
    table.add_row("splits", ", ".join(f"{k} {v} steps" for k, v in s["split_steps"].items()))
    for c, st in s["stats"].items():
        table.add_row(escape(f"{c} [{s['units'][c]}]"), "train mean {mean:.3f}  std {std:.3f}  min {min:.3f}  max {max:.3f}".format(**st))
    out.print(table)


@app.command()
@one_line_errors
def ingest(
    name: Annotated[str, typer.Argument(help="catalog entry")],
    source: Annotated[Optional[str], typer.Option(help="glob of source files, overriding the catalog")] = None,
    store: Annotated[Optional[Path], typer.Option(help="Zarr store to write, overriding the catalog")] = None,
    dask_address: Annotated[Optional[str], typer.Option(help="run on this Dask scheduler (tcp://host:8786)")] = None,
    force: Annotated[bool, typer.Option(help="rebuild even when the store is current")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Validate raw NetCDF/HDF5 files and write the canonical Zarr store with training statistics."""
    from .ingest import ingest as run_ingest

    result = run_ingest(name, source=source, store=store, dask_address=dask_address, force=force,
                        progress=not as_json)
    if as_json:
        print(json.dumps({"skipped": result.skipped, **result.summary}, indent=2))
    else:
        _print_summary(result.summary, result.skipped)


@app.command()
@one_line_errors
def info(store: Annotated[Path, typer.Argument(help="a simcast Zarr store")]) -> None:
    """Summarize a store: period, gaps, splits, statistics, provenance."""
    from .store import open_store

    ds = open_store(store)
    _print_summary(json.loads(ds.attrs["summary"]), skipped=True)
    prov = json.loads(ds.attrs["provenance"])
    out.print(f"provenance: {len(prov['source_files'])} source files, simcast {prov['simcast_version']}, "
              f"created {prov['created']}")


@synth_app.command("weatherbench")
@one_line_errors
def synth_weatherbench(
    out_dir: Annotated[Path, typer.Option("--out", help="folder to write into")],
    start: Annotated[str, typer.Option(help="first day")] = "2010-01-01",
    end: Annotated[str, typer.Option(help="last day (inclusive)")] = "2010-12-31",
    variables: Annotated[str, typer.Option(help="comma-separated: t2m,u10,v10,z500,t850")] = "t2m",
    resolution: Annotated[float, typer.Option(help="grid spacing in degrees (5.625 gives 32x64)")] = 5.625,
    freq: Annotated[str, typer.Option(help="time step")] = "1h",
    seed: int = 0,
) -> None:
    """WeatherBench-layout NetCDF files (one per year) with plausible weather."""
    from .synth import write_weatherbench

    paths = write_weatherbench(out_dir, start, end, variables.split(","), resolution, freq=freq, seed=seed)
    out.print(f"wrote {len(paths)} files under {out_dir}")


@synth_app.command("taxibj")
@one_line_errors
def synth_taxibj(
    out_dir: Annotated[Path, typer.Option("--out", help="folder to write into")],
    rows: int = 32,
    cols: int = 32,
    drop_slots: Annotated[float, typer.Option(help="fraction of slots to leave out (incomplete days)")] = 0.0,
    seed: int = 0,
) -> None:
    """TaxiBJ-layout HDF5 files BJ13..BJ16 over the real periods, plus BJ_Holiday.txt."""
    from .synth import write_taxibj

    paths = write_taxibj(out_dir, grid=(rows, cols), drop_slots=drop_slots, seed=seed)
    out.print(f"wrote {len(paths)} files under {out_dir}")


@app.command()
@one_line_errors
def train(
    name: Annotated[str, typer.Argument(help="catalog entry (its store must be ingested)")],
    preset: Annotated[Optional[str], typer.Option(help="simvp preset (default: the catalog's)")] = None,
    translator: Annotated[Optional[str], typer.Option(help="gsta | incepu | tau")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="epochs (default: the catalog's)")] = None,
    input_frames: Annotated[Optional[int], typer.Option("--input", help="frames in (default: the catalog's)")] = None,
    output_frames: Annotated[Optional[int], typer.Option("--output", help="frames out (default: the catalog's)")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="batch size per process")] = None,
    lr: Annotated[Optional[float], typer.Option(help="peak learning rate")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    out: Annotated[Optional[Path], typer.Option(help="run folder (default runs/NAME-TIME)")] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in --out (or the latest run) from last.pt")] = False,
    store: Annotated[Optional[Path], typer.Option(help="store to train on, overriding the catalog")] = None,
    compile: Annotated[bool, typer.Option(help="torch.compile the model")] = False,
    seed: Annotated[Optional[int], typer.Option(help="random seed")] = None,
    deterministic: Annotated[bool, typer.Option(help="deterministic algorithms (slower)")] = False,
) -> None:
    """Train SimVP on an ingested data set; prints the path of the best checkpoint."""
    from .train import run_training

    outcome = run_training(name, store=store, preset=preset, translator=translator, epochs=epochs, device=device,
                           out=out, resume=resume, input_frames=input_frames, output_frames=output_frames,
                           batch_size=batch_size, lr=lr, compile=compile or None,
                           seed=seed, deterministic=deterministic or None)
    r = outcome.result
    err.print(f"samples {outcome.samples}; best epoch {r.best_epoch}, validation loss {r.best_val_loss:.5f}; "
              f"run folder {outcome.run_dir}", highlight=False)
    print(r.best_path)


def _metrics_table(metrics: dict, info: dict) -> Table:
    from .evaluate import headline

    rows = headline(metrics)
    cols = list(rows[0][1])
    units = ", ".join(sorted(set(info.get("units", {}).values())))
    table = Table(title=f"{info.get('dataset', '')} {info['split']}: {info['samples']} samples, "
                        f"{info['input']} -> {info['output']} steps of {info['time_step']} ({units})")
    table.add_column("forecaster")
    for c in cols:
        table.add_column(c, justify="right")
    for name, vals in rows:
        table.add_row(name, *(f"{vals[c]:.4g}" if isinstance(vals[c], float) else str(vals[c]) for c in cols))
    table.caption = "RMSE = sqrt of the mean squared error over all samples and grid points; *_weighted: cos(lat)"
    return table


@app.command()
@one_line_errors
def evaluate(
    name: Annotated[str, typer.Argument(help="catalog entry")],
    checkpoint: Annotated[Path, typer.Option(help="checkpoint (best.pt) to score")],
    split: Annotated[str, typer.Option(help="test | validation | train")] = "test",
    out: Annotated[Optional[Path], typer.Option(help="folder for metrics.json (default beside the checkpoint)")] = None,
    store: Annotated[Optional[Path], typer.Option(help="store, overriding the catalog")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
) -> None:
    """Score a checkpoint next to persistence, previous-day and climatology baselines (physical units)."""
    from .evaluate import evaluate_checkpoint

    metrics, info, paths = evaluate_checkpoint(name, checkpoint, split=split, out=out, store=store, device=device)
    console.print(_metrics_table(metrics, info))
    print(paths["metrics"])


@app.command()
@one_line_errors
def forecast(
    name: Annotated[str, typer.Argument(help="catalog entry")],
    checkpoint: Annotated[Path, typer.Option(help="checkpoint to forecast with")],
    out: Annotated[Path, typer.Option(help="output path stem: writes OUT.zarr and OUT.nc")],
    init_time: Annotated[Optional[list[str]], typer.Option(
        help="init time (last observed frame), or start/end[/every] for a hindcast; repeatable; default latest")] = None,
    lead_hours: Annotated[Optional[float], typer.Option(help="horizon; beyond the trained one by rollout")] = None,
    store: Annotated[Optional[Path], typer.Option(help="store, overriding the catalog")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    geotiff: Annotated[bool, typer.Option(help="also one GeoTIFF per lead time (needs rioxarray)")] = False,
) -> None:
    """Forecast from the latest (or given) frames of the store; CF NetCDF and Zarr, georeferenced."""
    from .forecast import run_forecast

    paths = run_forecast(name, checkpoint, out, init_times=init_time, lead_hours=lead_hours, store=store,
                         device=device, geotiff=geotiff)
    for p in paths.values():
        print(p)


@app.command()
@one_line_errors
def report(
    forecast_path: Annotated[Path, typer.Argument(metavar="FORECAST", help="forecast .zarr/.nc (or its stem)")],
    out: Annotated[Path, typer.Option(help="report folder")],
    truth: Annotated[Optional[Path], typer.Option(help="store with the observed truth")] = None,
    metrics: Annotated[Optional[Path], typer.Option(help="metrics.json from simcast evaluate")] = None,
    projection: Annotated[str, typer.Option(help="cartopy projection name, e.g. PlateCarree, Robinson")] = "PlateCarree",
    lead: Annotated[Optional[list[str]], typer.Option(help="lead time(s) to map, e.g. 6 or 30min; repeatable")] = None,
) -> None:
    """Maps (cartopy), a lead-time metrics plot and an HTML/Markdown report of a forecast."""
    from .report import write_report

    m = json.loads(metrics.read_text()) if metrics else None
    leads = [float(x) if x.replace(".", "", 1).isdigit() else x for x in lead] if lead else None  # bare = hours
    result = write_report(forecast_path, out, truth_store=truth, metrics=m, projection=projection, leads=leads)
    print(result["html"])


@app.command()
@one_line_errors
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for runs, metrics, forecasts and reports")] = Path("outputs/demo"),
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    traffic: Annotated[bool, typer.Option(help="also the NYBike traffic sample")] = True,
) -> None:
    """The main job on the bundled real data: ingest, train, evaluate, forecast, map and report."""
    from .demo import run_demo

    for r in run_demo(out_dir, device=device, traffic=traffic):
        console.print(_metrics_table(r.metrics, {**r.info, "dataset": r.name}))
        for what, path in r.outputs.items():
            console.print(f"  {what}: {path}", highlight=False)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
