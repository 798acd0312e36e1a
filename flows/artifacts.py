"""Prefect artifacts: what a person looks for in the UI after a run. A Markdown summary (the metrics table with
the model next to the baselines, best marked), a table artifact of the same numbers, and links to the report,
maps and outputs (file:// URLs: they open on the machine that ran the flow); forecast runs add the verification
of the archive."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE


def slug(text: str) -> str:
    """An artifact key: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def uri(path: str | Path) -> str:
    return Path(path).absolute().as_uri()


def link(text: str, path: str | Path) -> str:
    return f"[{text}]({uri(path)})"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def store_lines(store: dict) -> list[str]:
    s = store["summary"]
    state = "current, not rebuilt" if store["skipped"] else "written by this run"
    return md_table(["store", "value"], [
        ["path", f"`{store['store']}` ({state})"],
        ["time steps", f"{s['time_steps']} of {s['time_step']}, {s['start']} .. {s['end']}"],
        ["missing", f"{s['missing_steps']} steps in {s['gaps']} gaps"],
        ["grid", f"{' x '.join(map(str, s['grid']))} ({', '.join(s['dims'])})"],
        ["channels", ", ".join(f"{c} [{s['units'].get(c, '')}]" for c in s["channels"])],
        ["splits", ", ".join(f"{k} {v} steps" for k, v in s["split_steps"].items())],
    ])


def metrics_lines(scores: dict) -> tuple[list[str], list[dict]]:
    """Markdown table lines and table-artifact rows of the overall metrics, model first."""
    from pipelines.report.tables import metrics_table

    info = scores["info"]
    units = set(info.get("units", {}).values())  # one unit for all channels: metrics over channels carry it
    header, rows = metrics_table(scores["metrics"], units.pop() if len(units) == 1 else "")
    table = [dict(zip(header, row)) for row in rows]
    lines = [f"{info['split']} split, {info['samples']} samples, {info['input']} -> {info['output']} steps of "
             f"{info['time_step']}; physical units. `*`: best in its column.", ""]
    return lines + md_table(header, rows), table


def report_links(report: dict) -> list[str]:
    lines = [f"- {link('report (HTML)', report['html'])} · {link('Markdown', report['markdown'])}"]
    if report.get("metrics_plot"):
        lines.append(f"- {link('metrics by lead time', report['metrics_plot'])}")
    lines += [f"- map: {link(Path(m).stem, m)}" for m in report["maps"]]
    return lines


@task(name="publish-ingest", cache_policy=NO_CACHE, task_run_name="publish-ingest")
def publish_ingest(dataset: str, store: dict) -> None:
    key = slug(dataset)
    create_markdown_artifact("\n".join([f"# {dataset}: Zarr store", ""] + store_lines(store)) + "\n",
                             key=f"{key}-store", description=f"store of {dataset}")


@task(name="publish-training", cache_policy=NO_CACHE, task_run_name="publish-training")
def publish_training(dataset: str, store: dict, run: dict, scores: dict, forecast: dict, report: dict) -> None:
    key = slug(dataset)
    metric_md, table = metrics_lines(scores)
    lines = [f"# {dataset}: training run `{Path(run['run_dir']).name}`", "",
             f"Best epoch {run['best_epoch']} of {run['epochs']}, validation loss {run['best_val_loss']:.5g}"
             + (f", {run['processes']} processes (torchrun)" if run.get("processes", 1) > 1 else "") + ".", "",
             "## Scores: model next to the baselines", ""] + metric_md + ["", "## Outputs", "",
             f"- run folder {link(run['run_dir'], run['run_dir'])}: {link('best.pt', run['best_path'])}, "
             f"{link('metrics.csv', Path(run['run_dir']) / 'metrics.csv')}",
             f"- scores: {link('metrics.json', scores['paths']['metrics'])}, "
             f"{link('metrics.nc', scores['paths']['netcdf'])}",
             f"- forecast for the maps: {link('NetCDF', forecast['netcdf'])}, {link('Zarr', forecast['zarr'])}"]
    lines += report_links(report) + ["", "## Data", ""] + store_lines(store)
    create_markdown_artifact("\n".join(lines) + "\n", key=f"{key}-training",
                             description=f"{dataset}: training, scores next to the baselines, maps")
    create_table_artifact(table, key=f"{key}-metrics",
                          description=f"{dataset}: {scores['info']['split']} scores, model next to the baselines")
    create_link_artifact(uri(report["html"]), link_text="report.html", key=f"{key}-report",
                         description=f"{dataset}: maps and scores report")
    create_link_artifact(uri(run["best_path"]), link_text="best.pt", key=f"{key}-checkpoint",
                         description=f"{dataset}: best checkpoint")


@task(name="publish-forecast", cache_policy=NO_CACHE, task_run_name="publish-forecast")
def publish_forecast(dataset: str, checkpoint: str, init: str, forecast: dict, report: dict,
                     scores_file: Path | None = None) -> None:
    key = slug(dataset)
    scores = None
    if scores_file is not None and scores_file.is_file():
        scores = {"metrics": json.loads(scores_file.read_text()),
                  "info": json.loads((scores_file.parent / "evaluation.json").read_text())}
    lines = [f"# {dataset}: forecast from {init}", "", f"Checkpoint {link(checkpoint, checkpoint)}.", "",
             "## Outputs", "", f"- forecast: {link('NetCDF', forecast['netcdf'])}, {link('Zarr', forecast['zarr'])}"]
    lines += report_links(report)
    if scores:
        metric_md, table = metrics_lines(scores)
        lines += ["", "## The checkpoint's scores, next to the baselines", ""] + metric_md
        create_table_artifact(table, key=f"{key}-forecast-metrics",
                              description=f"{dataset}: the forecasting checkpoint's test scores")
    create_markdown_artifact("\n".join(lines) + "\n", key=f"{key}-forecast",
                             description=f"{dataset}: latest forecast and maps")
    create_link_artifact(uri(report["html"]), link_text="report.html", key=f"{key}-forecast-report",
                         description=f"{dataset}: forecast maps report")
    create_link_artifact(uri(forecast["netcdf"]), link_text=Path(forecast["netcdf"]).name,
                         key=f"{key}-forecast-netcdf", description=f"{dataset}: forecast (CF NetCDF)")


def verification_lines(verification: dict) -> tuple[list[str], list[dict]]:
    """Markdown lines (scores over all verified forecasts, the main metric by lead) and the table-artifact rows
    (by lead) of a verification."""
    from pipelines.report.tables import METRIC_NAMES, lead_table, metrics_table

    result = verification["result"]
    metric = result["main_metric"]
    units = set(result.get("units", {}).values())
    unit = units.pop() if len(units) == 1 else ""
    header, rows = metrics_table(result["metrics"], unit)
    lines = [verification["message"], "", "### Over all verified forecasts", ""] + md_table(header, rows)
    header, rows = lead_table(result["metrics"], metric, result["lead_hours"],
                              result["metrics"]["model"]["samples_by_lead"])
    lines += ["", f"### {METRIC_NAMES.get(metric, metric)}{f' [{unit}]' if unit else ''} by lead time", ""]
    lines += md_table(header, rows) + ["", "`*`: best in its column (overall) or at that lead."]
    table = [{"metric": METRIC_NAMES.get(metric, metric) + (f" [{unit}]" if unit else ""), **dict(zip(header, row))}
             for row in rows]
    return lines, table


@task(name="publish-verification", cache_policy=NO_CACHE, task_run_name="publish-verification")
def publish_verification(dataset: str, verification: dict) -> None:
    """The verification of the archive on each run: a Markdown summary with the tables, the by-lead table as a
    table artifact and a link to the page; or a note that nothing could be verified yet."""
    key = slug(dataset)
    lines = [f"# {dataset}: verification of the archived forecasts", ""]
    if not verification.get("verified"):
        lines += [f"Nothing to verify yet: {verification['message']}", "",
                  f"Archive `{verification['archive']}`."]
        create_markdown_artifact("\n".join(lines) + "\n", key=f"{key}-verification",
                                 description=f"{dataset}: verification of the archived forecasts")
        return
    paths = verification["paths"]
    metric_lines, table = verification_lines(verification)
    page = f"- {link('verification page (HTML)', paths['html'])} · {link('Markdown', paths['markdown'])}"
    lines += metric_lines + ["", "## Files", "", page]
    if paths.get("plot"):
        lines.append(f"- {link('skill over init time', paths['plot'])}")
    lines += [f"- scores: {link('verification.json', paths['json'])}, {link('verification.nc', paths['netcdf'])}",
              f"- archive `{verification['archive']}`"]
    create_markdown_artifact("\n".join(lines) + "\n", key=f"{key}-verification",
                             description=f"{dataset}: verification of the archived forecasts")
    create_table_artifact(table, key=f"{key}-verification-table",
                          description=f"{dataset}: archived forecasts next to the baselines, by lead time")
    create_link_artifact(uri(paths["html"]), link_text="verification.html", key=f"{key}-verification-page",
                         description=f"{dataset}: verification page")


@task(name="publish-report", cache_policy=NO_CACHE, task_run_name="publish-report")
def publish_report(forecast: str, report: dict) -> None:
    name = Path(forecast).name
    lines = [f"# Maps and report: {name}", "", f"Forecast `{Path(forecast).absolute()}`.", ""] + report_links(report)
    create_markdown_artifact("\n".join(lines) + "\n", key="map-report", description=f"maps of {name}")
    create_link_artifact(uri(report["html"]), link_text="report.html", key="map-report-html",
                         description=f"maps and report of {name}")
