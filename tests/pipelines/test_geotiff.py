"""GeoTIFF per lead time: north up, EPSG:4326, the forecast's values and bounds."""

import numpy as np
import pandas as pd
import pytest

from pipelines import synth
from pipelines.forecast.output import forecast_dataset, write_forecast

from pipelines.store import open_store

from ..conftest import entry, ingest

rasterio = pytest.importorskip("rasterio")
pytest.importorskip("rioxarray")


def test_geotiff_per_lead_is_georeferenced(tmp_path):
    synth.write_weatherbench(tmp_path / "data/uk", "2010-01-01", "2010-01-06", resolution=1.0,
                             region=((50.0, 58.0), (-10.0, 2.0)))
    ds = open_store(ingest(entry(source={"pattern": "uk/2m_temperature/*.nc"}, grid=(9, 13)), progress=False).store)
    values = ds["data"].values[None, -3:]
    fc = forecast_dataset(values, ds["time"].values[-4:-3], pd.to_timedelta([1, 2, 3], "h").values, ds, {})
    paths = write_forecast(fc, tmp_path / "fc", geotiff=True)
    tifs = sorted(paths["geotiff"].glob("*.tif"))
    assert [t.name for t in tifs] == [f"init20100106T2000_lead0{k}h.tif" for k in (1, 2, 3)]
    with rasterio.open(tifs[1]) as r:
        assert r.crs.to_epsg() == 4326 and r.count == 1 and (r.height, r.width) == (9, 13)
        assert r.bounds.left == pytest.approx(-10.5) and r.bounds.top == pytest.approx(58.5)
        band = r.read(1)
    np.testing.assert_allclose(band, values[0, 1, 0, ::-1], rtol=1e-6)  # first row is the north
