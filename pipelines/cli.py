"""The `simcast` command line: each stage command builds a spec from the catalog and its options, runs the stage
and prints the result. The options of a stage command are the options of its spec (pipelines/specs.py)."""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer
from typer.core import TyperGroup

try:  # typer >= 0.25 carries its own copy of click; its exceptions are the ones raised here
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer on the public click
    from click import exceptions as click_errors

from .errors import USER_ERRORS, UsageError, cli_flag, exit_code, one_line


class OneLineGroup(TyperGroup):
    """Usage errors (an unknown option, a missing argument) end as one line too, with exit code 2."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # an Exit inside returns its code
        except click_errors.NoArgsIsHelpError as e:
            e.show()
            sys.exit(e.exit_code)
        except click_errors.UsageError as e:
            command = e.ctx.command_path if e.ctx else "simcast"
            print(f"error: {e.format_message()} (see {command} --help)", file=sys.stderr)
            sys.exit(2)
        except typer.Abort:
            print("aborted", file=sys.stderr)
            sys.exit(1)
        except typer.Exit as e:
            sys.exit(e.exit_code)
        if standalone_mode:
            sys.exit(code if isinstance(code, int) else 0)
        return code


def _typer(help: str) -> typer.Typer:
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                       rich_markup_mode=None, cls=OneLineGroup)


app = _typer("simcast: gridded spatio-temporal forecasting (WeatherBench, TaxiBJ) with SimVP.")
catalog_app = _typer("List and inspect the data sets of the catalog.")
synth_app = _typer("Write synthetic data in the exact WeatherBench / TaxiBJ file layouts.")
app.add_typer(catalog_app, name="catalog")
app.add_typer(synth_app, name="synth")


def one_line_errors(fn):
    """A user error ends the command with one line naming the file or option and the problem: exit code 2 for
    usage errors, 1 for bad input (SIMCAST_DEBUG=1 shows the traceback). A bug keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            if os.environ.get("SIMCAST_DEBUG"):
                raise
            print(f"error: {one_line(e, flag=_flag)}", file=sys.stderr)
            raise typer.Exit(exit_code(e)) from None

    return wrapper


def _flag(option: str) -> str:
    """How the command line spells a spec option: its own flag (run_dir is --out), else --the-name."""
    from .specs import SPECS

    flags = {o.name: o.flag for spec in SPECS.values() for o in spec.options() if o.flag}
    return {**flags, "spec_file": "--spec", "as_json": "--json"}.get(option) or cli_flag(option)


def _console():
    from rich.console import Console

    return Console()


def _settings():
    from .settings import Settings

    return Settings.load()


# ---- options from specs -----------------------------------------------------------------------------

def _cli_type(annotation) -> tuple[Any, str]:
    """(the type typer parses, a hint for the help text) for a spec field's annotation."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _cli_type(inner[0]) if len(inner) == 1 else (str, "")
    if typing.get_origin(annotation) is Literal:
        return str, " | ".join(map(str, args))
    if typing.get_origin(annotation) is list:
        return list[args[0] if args else str], "VALUE"
    if annotation in (int, float):
        return str, "INTEGER" if annotation is int else "NUMBER"  # parsed by the spec: its message shows the value
    if annotation in (str, bool, Path):
        return annotation, ""
    return str, ""


def spec_parameters(spec_cls) -> list[inspect.Parameter]:
    params = []
    for o in spec_cls.options():
        kind, hint = _cli_type(o.type)
        metavar = hint if hint in ("INTEGER", "NUMBER", "VALUE") else None
        help_text = o.help + (f" ({hint})" if hint and not metavar and hint not in o.help else "")
        flag = o.flag or "--" + o.name.replace("_", "-")
        if o.positional:
            info = typer.Argument(help=help_text, show_default=False)
            default, annotation = ..., kind
        elif kind is bool and o.default is False and o.name in spec_cls.model_fields:
            info, default, annotation = typer.Option(flag, help=help_text), False, bool
        elif kind is bool:
            info = typer.Option(f"{flag}/--no-{flag[2:]}", help=help_text, show_default=False)
            default, annotation = None, Optional[bool]
        else:
            info = typer.Option(flag, help=help_text, show_default=False, metavar=metavar)
            default, annotation = None, Optional[kind]
        params.append(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[annotation, info]))
    return params


def stage_command(group: typer.Typer, name: str, spec_cls, extra: list[inspect.Parameter] = ()):
    """Register `fn(**options)` as a command whose options are the spec's (plus `extra`)."""
    def decorate(fn):
        params = spec_parameters(spec_cls) + list(extra)

        @functools.wraps(fn)
        def command(**kwargs):
            return fn(**kwargs)

        command.__signature__ = inspect.Signature(params)
        group.command(name, help=inspect.getdoc(fn))(one_line_errors(command))
        return fn
    return decorate


def _extra(name: str, annotation, info, default=None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, info])


# ---- catalog ------------------------------------------------------------------------------------------

@catalog_app.command("list")
@one_line_errors
def catalog_list() -> None:
    """One line per data set: name, kind, channels, grid, time step, window, and the catalog it comes from."""
    from rich.table import Table

    cat = _settings().catalog()
    table = Table(title="catalog")
    table.add_column("name", no_wrap=True)
    for col in ("kind", "channels", "grid", "step", "window", "from"):
        table.add_column(col)
    for e in cat:
        grid = "x".join(map(str, e.grid)) if e.grid else "-"
        table.add_row(e.name, e.kind, ",".join(e.channel_names()), grid, e.time_step,
                      f"{e.window.input}->{e.window.output}", cat.origins[e.name].name)
    _console().print(table)


@catalog_app.command("show")
@one_line_errors
def catalog_show(name: Annotated[str, typer.Argument(help="catalog entry")]) -> None:
    """One entry as YAML, ready to copy into your own catalog (SIMCAST_CATALOG) and edit."""
    import yaml

    settings = _settings()
    catalog = settings.catalog()
    entry = catalog[name]
    body = {name: entry.model_dump(mode="json", exclude={"name"}, exclude_none=True)}
    sys.stdout.write(f"# from {catalog.origins[name]}; source root {settings.source_root(entry)}; "
                     f"store {settings.store_path(entry)}\n")
    sys.stdout.write(yaml.safe_dump({"datasets": body}, sort_keys=False, width=float("inf")))


# ---- ingest, info -------------------------------------------------------------------------------------

def _print_summary(s: dict, skipped: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    state = "is current, nothing to do" if skipped else (f"extended: {s['appended_steps']} new steps appended"
                                                         if "appended_steps" in s else "written")
    console.print(f"[bold]{escape(s['dataset'])}[/]: store {escape(s['store'])} {state}", highlight=False)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("time steps", f"{s['time_steps']} ({s['time_step']}) {s['start']} .. {s['end']}")
    table.add_row("missing", f"{s['missing_steps']} steps in {s['gaps']} gaps")
    table.add_row("dims", f"{tuple(s['dims'])}, grid {s['grid'][0]}x{s['grid'][1]}")
    table.add_row("splits", ", ".join(f"{k} {v} steps" for k, v in s["split_steps"].items()))
    if "source_check" in s:
        table.add_row("sources checked", escape(s["source_check"]))
    for c, st in s["stats"].items():
        table.add_row(escape(f"{c} [{s['units'][c]}]"),
                      "train mean {mean:.3f}  std {std:.3f}  min {min:.3f}  max {max:.3f}".format(**st))
    console.print(table)


from .specs import (  # noqa: E402
    DownloadSpec,
    EvaluateSpec,
    ForecastSpec,
    IngestSpec,
    ReportSpec,
    TrainSpec,
    VerifySpec,
)


@stage_command(app, "download", DownloadSpec)
def download(dataset: str, **options) -> None:
    """Fetch a catalog entry's raw files into the data root where ingest looks for them (resumable, checked,
    recorded in the data root's .simcast-downloads.json); for data without a stable link (TaxiBJ), say where to
    get the files and where to put them."""
    from .download import run
    from .download import _size as size

    result = run(DownloadSpec.from_catalog(dataset, **options))
    if result.note:
        print(f"{dataset}: {result.note}")
        return
    for item in result.items:
        what = {"present": f"present and verified ({item.files} files)" if item.files > 1 else "present and verified",
                "downloaded": f"downloaded ({size(item.transferred)} transferred, {item.files} files put in place)",
                "in place": "in place"}[item.status]
        print(f"{result.data_root / item.path}: {what}")
    print(f"{dataset}: every file is in place under {result.data_root}; next: simcast ingest {dataset}")




@stage_command(app, "ingest", IngestSpec, extra=[_extra("as_json", bool, typer.Option("--json", help="print the "
                                                                                        "summary as JSON"), False)])
def ingest(dataset: str, as_json: bool = False, **options) -> None:
    """Validate raw NetCDF/HDF5 files and write the canonical Zarr store with training statistics."""
    from .ingest import run

    result = run(IngestSpec.from_catalog(dataset, **options), progress=not as_json)
    if as_json:
        print(json.dumps({"skipped": result.skipped, **result.summary}, indent=2))
    else:
        _print_summary(result.summary, result.skipped)


@app.command()
@one_line_errors
def info(store: Annotated[Path, typer.Argument(help="a simcast Zarr store")],
         check: Annotated[bool, typer.Option("--check", help="read every chunk: checksums, completeness, "
                                                              "finite data")] = False) -> None:
    """Summarize a store: period, gaps, splits, statistics, provenance; --check verifies it whole."""
    from .store import open_store, verify_store

    ds = open_store(store)
    _print_summary(json.loads(ds.attrs["summary"]), skipped=True)
    prov = json.loads(ds.attrs["provenance"])
    print(f"provenance: {len(prov['source_files'])} source files, simcast {prov['simcast_version']}, "
          f"created {prov['created']}")
    if check:
        found = verify_store(store)
        print(f"check: {found['arrays']} arrays, {found['chunks']} chunks, all present and matching their "
              f"checksums; {found['time_steps']} time steps of finite data")


# ---- synthetic data -----------------------------------------------------------------------------------

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
    print(f"wrote {len(paths)} files under {out_dir}")


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
    print(f"wrote {len(paths)} files under {out_dir}")


# ---- train, evaluate, forecast, report ----------------------------------------------------------------

TERMINAL_METRICS = ("rmse_weighted", "rmse", "mae", "bias", "acc", "mse_paper", "mae_paper", "masked_mae",
                    "masked_mape")


def _metrics_table(metrics: dict, info: dict):
    from rich.table import Table

    from .report.tables import metrics_table

    units = set(info.get("units", {}).values())
    header, rows = metrics_table(metrics, units.pop() if len(units) == 1 else "", columns=TERMINAL_METRICS)
    table = Table(title=f"{info.get('dataset', '')} {info['split']}: {info['samples']} samples, "
                        f"{info['input']} -> {info['output']} steps of {info['time_step']}")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    table.caption = ("whole grid, all channels; RMSE: sqrt of the mean squared error over all samples and grid "
                     "points (WeatherBench2's); 95% interval: block bootstrap over init times; *: best in its "
                     "column; every metric and its convention in metrics.json / evaluation.json")
    if info.get("external"):
        table.caption += (f"; every forecaster scored on the init times {', '.join(info['external'])} holds "
                          f"({info['samples']} of {info.get('samples_without_external', '?')} samples)")
    return table


def _skill_lines(metrics: dict, metric: str) -> list[str]:
    from .report.tables import skill_summary

    hours = metrics.get("model", {}).get("lead_hours") or []
    return skill_summary(metrics, metric, hours) if hours else []


@stage_command(app, "train", TrainSpec, extra=[_extra("spec_file", Optional[Path], typer.Option(
    "--spec", help="run the spec file of an earlier run (its spec.json); other options are ignored"))])
def train(dataset: str, spec_file: Path | None = None, **options) -> None:
    """Train SimVP on an ingested data set; prints the path of the best checkpoint."""
    from .train import run

    spec = TrainSpec.load(spec_file) if spec_file else TrainSpec.from_catalog(dataset, **options)
    if spec.dataset != dataset:
        raise UsageError("spec_file", f"{spec_file} trains {spec.dataset!r}, not {dataset!r}")
    outcome = run(spec)
    r = outcome.result
    print(f"samples {outcome.samples}; best epoch {r.best_epoch}, validation loss {r.best_val_loss:.5f}; "
          f"run folder {outcome.run_dir}", file=sys.stderr)
    print(r.best_path)


@stage_command(app, "evaluate", EvaluateSpec)
def evaluate(dataset: str, **options) -> None:
    """Score a checkpoint next to persistence, previous day, climatology and a fitted linear forecast (physical
    units, regions, 95% intervals, scorecard)."""
    from .evaluate import run

    metrics, info, paths = run(EvaluateSpec.from_catalog(dataset, **options))
    console = _console()
    console.print(_metrics_table(metrics, info))
    for line in _skill_lines(metrics, info["main_metric"]):
        console.print(line, highlight=False)
    print(paths["metrics"])


@stage_command(app, "forecast", ForecastSpec)
def forecast(dataset: str, **options) -> None:
    """Forecast from the latest (or given) frames of the store; CF NetCDF and Zarr, georeferenced; --archive adds
    it to the data set's forecast archive."""
    from .forecast import run

    for path in run(ForecastSpec.from_catalog(dataset, **options)).values():
        print(path)


def _verification_table(result: dict):
    from rich.table import Table

    from .report.tables import METRIC_NAMES, lead_table

    metric = result["main_metric"]
    header, rows = lead_table(result["metrics"], metric, result["lead_hours"],
                              result["metrics"]["model"]["samples_by_lead"])
    units = set(result["units"].values())
    c = result["counts"]
    table = Table(title=f"{result['dataset']}: {METRIC_NAMES.get(metric, metric)}"
                        + (f" [{units.pop()}]" if len(units) == 1 else "")
                        + f" of {c['verified_init_times']} verified forecasts by lead time")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    table.caption = (f"*: best at that lead; {c['awaiting_truth']} lead times await their truth, "
                     f"{c['missing_in_store']} fall on missing store times")
    return table


@stage_command(app, "verify", VerifySpec)
def verify(dataset: str, **options) -> None:
    """Score the archived forecasts whose valid times are now in the store, next to the reference forecasts for
    the same init times, by lead and by init time; writes verification.json/.nc and an HTML/Markdown page."""
    from .verify import run

    outcome = run(VerifySpec.from_catalog(dataset, **options))
    _console().print(_verification_table(outcome["result"]))
    print(outcome["paths"]["html"])


@stage_command(app, "report", ReportSpec)
def report(forecast: Path, **options) -> None:
    """Maps (cartopy), a lead-time metrics plot and an HTML/Markdown report of a forecast."""
    from .report import run

    print(run(ReportSpec.from_args(forecast=forecast, **options))["html"])


@app.command()
@one_line_errors
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for runs, metrics, forecasts and reports")] = Path(
        "outputs/demo"),
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    traffic: Annotated[bool, typer.Option(help="also the NYBike traffic sample")] = True,
) -> None:
    """The main job on the bundled real data: ingest, train, evaluate, forecast, map and report."""
    from .demo import run_demo

    console = _console()
    for r in run_demo(out_dir, device=device, traffic=traffic):
        console.print(_metrics_table(r.metrics, {**r.info, "dataset": r.name}))
        for line in _skill_lines(r.metrics, r.info["main_metric"]):
            console.print(line, highlight=False)
        for what, path in r.outputs.items():
            console.print(f"  {what}: {path}", highlight=False)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
