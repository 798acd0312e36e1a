"""The `ingest` flow: (download the raw files when asked) -> raw NetCDF / HDF5 -> validated Zarr store with training
statistics (skipped when current)."""

from __future__ import annotations

from prefect import flow

from flows.artifacts import publish_ingest
from flows.tasks import download_sources, ingest_store, one_line_errors
from pipelines.specs import DownloadSpec, IngestSpec


@flow(name="ingest", log_prints=True)
def ingest_flow(dataset: str = "era5-uk-t2m", source: str | None = None, store: str | None = None,
                dask_address: str | None = None, force: bool = False, download: bool = False) -> dict:
    """Validate a catalog entry's raw files and write its Zarr store; a no-op (a cached task) when the store
    already holds the current files.

    Args:
        dataset: catalog entry (`simcast catalog list`).
        source: glob of source files overriding the catalog's (relative to the working directory).
        store: Zarr store to write, overriding the catalog's (default under $SIMCAST_STORE_ROOT).
        dask_address: run the ingest on this Dask scheduler, e.g. tcp://scheduler:8786.
        force: rebuild even when the store is current.
        download: first fetch the entry's raw files into the data root (`simcast download`: resumable and checked; a
            no-op when they are there and verified).
    """
    with one_line_errors():
        spec = IngestSpec.from_catalog(dataset, source=source, store=store, dask_address=dask_address, force=force)
        fetch = DownloadSpec.from_catalog(dataset) if download else None
    if fetch is not None:
        download_sources(fetch)
    result = ingest_store(spec)
    publish_ingest(dataset, result)
    return result


if __name__ == "__main__":
    ingest_flow()
