"""The data set a flow runs on when none is given: the bundled sample of the kind its name says."""

from __future__ import annotations

DEFAULT_DATASETS = {"weatherbench": "era5-uk-t2m", "taxibj": "nybike"}


def default_dataset() -> str:
    """era5-uk-t2m for the weatherbench-* flows, nybike for the taxibj-* flows (by the running flow's name)."""
    from prefect.runtime import flow_run

    name = flow_run.flow_name or ""
    return DEFAULT_DATASETS.get(name.split("-")[0], DEFAULT_DATASETS["weatherbench"])
