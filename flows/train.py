"""The training flow: (download) -> ingest (skipped when the store is current) -> train -> evaluate -> maps and report.

One flow function, deployed under two names: `weatherbench-train` (default data set: the bundled ERA5 UK sample)
and `taxibj-train` (default: the bundled NYBike sample). Everything a run writes lands in its run folder
`<runs>/<dataset>-<time>/`: spec.json, best.pt, last.pt, metrics.csv, history.json, eval-test/ (scores next to the
baselines), hindcast.zarr/.nc (a forecast from the latest init time with truth) and report/.
"""

from __future__ import annotations

from prefect import flow

from flows.artifacts import publish_training
from flows.defaults import default_dataset
from flows.tasks import (
    download_sources,
    evaluate_model,
    ingest_store,
    map_report,
    one_line_errors,
    train_model,
    write_forecast,
)
from pipelines.forecast import latest_init_with_truth
from pipelines.settings import Settings
from pipelines.specs import DownloadSpec, EvaluateSpec, ForecastSpec, IngestSpec, ReportSpec, TrainSpec
from pipelines.timefmt import parse_lead


def train_flow(dataset: str | None = None, preset: str | None = None, translator: str | None = None,
               epochs: int | None = None, device: str = "auto", source: str | None = None,
               train_options: dict | None = None, nproc_per_node: int | None = None, dask_address: str | None = None,
               force_ingest: bool = False, runs_dir: str | None = None, split: str = "test",
               projection: str = "PlateCarree", map_leads: list[str | float] | None = None,
               download: bool = False) -> dict:
    """Train SimVP on a catalog entry: ingest -> train -> evaluate next to the baselines -> maps and report.

    Args:
        dataset: catalog entry (default: the bundled ERA5 UK sample for weatherbench-train, the bundled NYBike
            sample for taxibj-train).
        preset: released configuration, model size and recipe (default: the catalog entry's).
        translator: gsta | incepu | tau (default: the catalog entry's).
        epochs: epochs (default: the catalog entry's).
        device: auto | cpu | cuda.
        source: glob of source files overriding the catalog's.
        train_options: more training options, as `simcast train` takes them, e.g. {"batch_size": 16, "lr": 0.005,
            "max_steps_per_epoch": 100, "seed": 1, "input": 12}.
        nproc_per_node: > 1 trains under torchrun on that many processes (GPUs); default $SIMCAST_NPROC_PER_NODE or 1.
        dask_address: ingest on this Dask scheduler (tcp://host:8786).
        force_ingest: rebuild the store even when it is current.
        runs_dir: root of run folders (default $SIMCAST_RUNS_ROOT or ./runs).
        split: split to score on.
        projection: cartopy projection of the maps (PlateCarree, Robinson, ...).
        map_leads: lead times to map, hours or strings like "6h" (default: up to four).
        download: first fetch the entry's raw files into the data root (`simcast download`; a no-op when they are
            there and verified).
    """
    dataset = dataset or default_dataset()
    with one_line_errors():
        for lead in map_leads or []:  # checked before any work: the report comes last
            parse_lead(str(lead), "map_leads")
        settings = Settings.load(runs_root=runs_dir)
        ingest_spec = IngestSpec.from_catalog(dataset, settings, source=source, dask_address=dask_address,
                                              force=force_ingest)
        fetch = DownloadSpec.from_catalog(dataset, settings) if download else None
    if fetch is not None:
        download_sources(fetch)
    store = ingest_store(ingest_spec)
    with one_line_errors():
        spec = TrainSpec.from_catalog(dataset, settings, store=store["store"], preset=preset, translator=translator,
                                      epochs=epochs, device=device, **(train_options or {}))
    run = train_model(spec, nproc_per_node)
    with one_line_errors():
        scores_spec = EvaluateSpec.from_catalog(dataset, settings, checkpoint=run["best_path"], store=store["store"],
                                                split=split, device=device)
    scores = evaluate_model(scores_spec)
    with one_line_errors():
        init = latest_init_with_truth(store["store"], spec.window.input, spec.window.output)
        forecast_spec = ForecastSpec.from_catalog(dataset, settings, checkpoint=run["best_path"], store=store["store"],
                                                  out=spec.run_dir / "hindcast", device=device,
                                                  init_times=[init.isoformat()] if init is not None else None)
    forecast = write_forecast(forecast_spec)
    with one_line_errors():
        report_spec = ReportSpec.from_args(forecast=forecast["zarr"], out=spec.run_dir / "report", truth=store["store"],
                                           metrics=scores["paths"]["metrics"], projection=projection,
                                           leads=[str(x) for x in map_leads or []])
    report = map_report(report_spec)
    publish_training(dataset, store, run, scores, forecast, report)
    return {"store": store["store"], "run_dir": run["run_dir"], "checkpoint": run["best_path"],
            "metrics": scores["paths"]["metrics"], "forecast": forecast, "report": report["html"],
            "maps": report["maps"]}


weatherbench_train = flow(name="weatherbench-train")(train_flow)
taxibj_train = flow(name="taxibj-train")(train_flow)
