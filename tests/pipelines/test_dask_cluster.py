"""The same ingest runs on a Dask cluster (--dask-address) and gives the same store."""

import numpy as np
import pytest

from pipelines import synth

from pipelines.store import open_store

from ..conftest import entry, ingest
from .test_taxibj import bj_entry

distributed = pytest.importorskip("distributed")


@pytest.mark.slow
def test_ingest_on_a_dask_cluster_matches_local(tmp_path):
    synth.write_weatherbench(tmp_path / "data/wb", "2010-01-01", "2010-01-06")
    synth.write_taxibj(tmp_path / "data/bj", {"BJ13": ("2013-07-01", "2013-07-08")})
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote_wb = open_store(ingest(entry(store="remote.zarr"), dask_address=cluster.scheduler_address, progress=False).store)
        remote_bj = open_store(ingest(bj_entry(store="remote_bj.zarr"), dask_address=cluster.scheduler_address,
                                      progress=False).store)
    local_wb = open_store(ingest(entry(store="local.zarr"), progress=False).store)
    local_bj = open_store(ingest(bj_entry(store="local_bj.zarr"), progress=False).store)
    for remote, local in ((remote_wb, local_wb), (remote_bj, local_bj)):
        np.testing.assert_array_equal(remote["data"].values, local["data"].values)
        np.testing.assert_array_equal(remote["stat_std"].values, local["stat_std"].values)
