"""The training flows: ingest (skipped when the store is current) -> train -> evaluate -> maps and report.

`weatherbench-train` takes WeatherBench-kind catalog entries (default: the bundled ERA5 UK sample),
`taxibj-train` TaxiBJ-kind ones (default: the bundled NYBike sample). Everything a run writes lands in its
run folder `<runs>/<dataset>-<time>/`: best.pt, last.pt, metrics.csv, history.json, eval-test/ (scores next
to the baselines), hindcast.zarr/.nc (a forecast from the latest init time with truth) and report/.
"""

from __future__ import annotations

from prefect import flow

from flows.artifacts import publish_training
from flows.tasks import (
    evaluate_model,
    ingest_store,
    map_report,
    new_run_dir,
    one_line_errors,
    require_kind,
    train_model,
    verifiable_init_time,
    write_forecast,
)


def train_and_report(kind: str, flow_name: str, dataset: str, preset: str | None, translator: str | None,
                     epochs: int | None, device: str, source: str | None, train_options: dict | None,
                     nproc_per_node: int | None, dask_address: str | None, force_ingest: bool, runs_dir: str | None,
                     split: str, projection: str, map_leads: list | None) -> dict:
    require_kind(dataset, kind, flow_name)
    store = ingest_store(dataset, source=source, dask_address=dask_address, force=force_ingest)
    run_dir = new_run_dir(dataset, runs_dir)
    run = train_model(dataset, store["store"], str(run_dir), preset=preset, translator=translator, epochs=epochs,
                      device=device, options=train_options, nproc_per_node=nproc_per_node)
    scores = evaluate_model(dataset, run["best_path"], store["store"], split=split, device=device)
    with one_line_errors():
        init = verifiable_init_time(store["store"], dataset)  # maps with the truth beside the forecast
    forecast = write_forecast(dataset, run["best_path"], store["store"], str(run_dir / "hindcast"),
                              init_times=[init] if init else None, device=device)
    report = map_report(forecast["zarr"], str(run_dir / "report"), truth=store["store"], metrics=scores["metrics"],
                        projection=projection, leads=map_leads)
    publish_training(dataset, store, run, scores, forecast, report)
    return {"store": store["store"], "run_dir": run["run_dir"], "checkpoint": run["best_path"],
            "metrics": scores["paths"]["metrics"], "forecast": forecast, "report": report["html"],
            "maps": report["maps"]}


@flow(name="weatherbench-train")
def weatherbench_train(dataset: str = "era5-uk-t2m", preset: str | None = None, translator: str | None = None,
                       epochs: int | None = None, device: str = "auto", source: str | None = None,
                       train_options: dict | None = None, nproc_per_node: int | None = None,
                       dask_address: str | None = None, force_ingest: bool = False, runs_dir: str | None = None,
                       split: str = "test", projection: str = "PlateCarree",
                       map_leads: list[str | float] | None = None) -> dict:
    """Train SimVP on a WeatherBench-kind catalog entry: ingest -> train -> evaluate -> report.

    Args:
        dataset: catalog entry of kind weatherbench (e.g. weatherbench-t2m-5.625deg; default: the bundled ERA5 UK
            sample).
        preset: simvp preset (default: the catalog entry's).
        translator: gsta | incepu | tau (default: the catalog entry's).
        epochs: epochs (default: the catalog entry's).
        device: auto | cpu | cuda.
        source: glob of source files overriding the catalog's.
        train_options: more TrainConfig fields, e.g. {"batch_size": 16, "lr": 0.005, "max_steps_per_epoch": 100}.
        nproc_per_node: > 1 trains under torchrun on that many processes (GPUs); default $SIMCAST_NPROC_PER_NODE or 1.
        dask_address: ingest on this Dask scheduler (tcp://host:8786).
        force_ingest: rebuild the store even when it is current.
        runs_dir: root of run folders (default $SIMCAST_RUNS_ROOT or ./runs).
        split: split to score on.
        projection: cartopy projection of the maps (PlateCarree, Robinson, ...).
        map_leads: lead times to map, hours or strings like "6h" (default: up to four).
    """
    return train_and_report("weatherbench", "weatherbench-train", dataset, preset, translator, epochs, device, source,
                            train_options, nproc_per_node, dask_address, force_ingest, runs_dir, split, projection,
                            map_leads)


@flow(name="taxibj-train")
def taxibj_train(dataset: str = "nybike", preset: str | None = None, translator: str | None = None,
                 epochs: int | None = None, device: str = "auto", source: str | None = None,
                 train_options: dict | None = None, nproc_per_node: int | None = None,
                 dask_address: str | None = None, force_ingest: bool = False, runs_dir: str | None = None,
                 split: str = "test", projection: str = "PlateCarree",
                 map_leads: list[str | float] | None = None) -> dict:
    """Train SimVP on a TaxiBJ-kind catalog entry (city flows): ingest -> train -> evaluate -> report.

    Args:
        dataset: catalog entry of kind taxibj (e.g. taxibj; default the bundled NYBike sample).
        preset: simvp preset (default: the catalog entry's).
        translator: gsta | incepu | tau (default: the catalog entry's).
        epochs: epochs (default: the catalog entry's).
        device: auto | cpu | cuda.
        source: glob of source files overriding the catalog's.
        train_options: more TrainConfig fields, e.g. {"batch_size": 16, "lr": 0.0005, "max_steps_per_epoch": 100}.
        nproc_per_node: > 1 trains under torchrun on that many processes (GPUs); default $SIMCAST_NPROC_PER_NODE or 1.
        dask_address: ingest on this Dask scheduler (tcp://host:8786).
        force_ingest: rebuild the store even when it is current.
        runs_dir: root of run folders (default $SIMCAST_RUNS_ROOT or ./runs).
        split: split to score on.
        projection: cartopy projection of the maps.
        map_leads: lead times to map, hours or strings like "30min" (default: up to four).
    """
    return train_and_report("taxibj", "taxibj-train", dataset, preset, translator, epochs, device, source,
                            train_options, nproc_per_node, dask_address, force_ingest, runs_dir, split, projection,
                            map_leads)
