"""Where on the grid a score is taken, and how much each grid point counts.

A region is a mask over the grid. The first region is always the whole grid: named `global` on a global lon/lat
grid (WeatherBench2's name for it) and `all` otherwise. Then come WeatherBench2's standard regions on global grids
(or where the catalog's `scoring.standard_regions` asks for them) and the catalog entry's own `scoring.regions`:
lat/lon boxes, or row/column ranges on grids without coordinates.

Area weights (lon/lat grids) are WeatherBench2's: each row's cell area, sin(upper bound) - sin(lower bound) with the
bounds halfway between latitudes (the outer ones half a spacing beyond, at most the pole), normalized to mean 1.
On an equiangular grid without pole rows this is cos(lat) exactly; with pole rows it is not (a pole row's cell
has an area, its cos is 0). A region's mean weighs its points by these weights and divides by their sum inside the
region, as WeatherBench2 does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from data_catalog.schema import Region as RegionSpec

Box = tuple[tuple[float, float], tuple[float, float] | None]  # (lat range, lon range or None for all longitudes)

# WeatherBench2's default regions of its evaluation script (bounds inclusive, longitudes east 0..360)
STANDARD_REGIONS: dict[str, list[Box]] = {
    "tropics": [((-20, 20), None)],
    "extra-tropics": [((-90, -20), None), ((20, 90), None)],
    "northern-hemisphere": [((20, 90), None)],
    "southern-hemisphere": [((-90, -20), None)],
    "europe": [((35, 75), (347.5, 42.5))],
    "north-america": [((25, 60), (240, 285))],
    "north-atlantic": [((25, 65), (290, 350))],
    "north-pacific": [((25, 60), (145, 230))],
    "east-asia": [((25, 60), (102.5, 150))],
    "ausnz": [((-45, -12.5), (120, 175))],
    "arctic": [((60, 90), None)],
    "antarctic": [((-90, -60), None)],
}


@dataclass(frozen=True)
class Regions:
    """Named masks (R, H, W) over the grid, the whole grid first, and the grid's point weights (H, W)."""

    names: list[str]
    masks: np.ndarray    # bool (R, H, W)
    weights: np.ndarray  # float64 (H, W): area weights with mean 1 on lon/lat grids, ones otherwise
    area_weighted: bool

    def describe(self) -> dict[str, int]:
        """Grid points per region."""
        return {n: int(m.sum()) for n, m in zip(self.names, self.masks)}


def area_weights(lat_degrees) -> np.ndarray:
    """WeatherBench2's latitude weights (H,): cell areas normalized to mean 1 (see the module docstring)."""
    lat = np.asarray(lat_degrees, dtype="float64")
    if lat.ndim != 1 or lat.size == 0:
        raise ValueError(f"latitudes: expected a non-empty 1-D array of degrees, got shape {lat.shape}")
    order = np.argsort(lat)
    s = np.deg2rad(lat[order])
    if s.size == 1:
        bounds = np.array([-np.pi / 2, np.pi / 2])
    else:
        mid = (s[:-1] + s[1:]) / 2
        bounds = np.concatenate([[s[0] - (mid[0] - s[0])], mid, [s[-1] + (s[-1] - mid[-1])]])
    bounds = np.clip(bounds, -np.pi / 2, np.pi / 2)
    area = np.sin(bounds[1:]) - np.sin(bounds[:-1])
    out = np.empty_like(area)
    out[order] = area
    return out / out.mean()


def is_global(lat: np.ndarray, lon: np.ndarray) -> bool:
    """A grid that covers the globe: latitudes within a spacing of both poles, longitudes all the way round."""
    if lat.size < 2 or lon.size < 2:
        return False
    dlat = np.abs(np.diff(np.sort(lat))).max()
    dlon = np.abs(np.diff(np.sort(lon % 360))).max()
    return lat.min() - dlat <= -90 + 1e-6 and lat.max() + dlat >= 90 - 1e-6 and np.ptp(lon % 360) + dlon >= 360 - 1e-6


def _lon_in(lon: np.ndarray, west: float, east: float) -> np.ndarray:
    """Longitudes (any convention) inside [west, east], wrapping when west > east (after taking both mod 360)."""
    lon, w, e = lon % 360, west % 360, east % 360
    if (east - west) >= 360:
        return np.ones(lon.shape, bool)
    return (lon >= w) & (lon <= e) if w <= e else (lon >= w) | (lon <= e)


def box_mask(lat: np.ndarray, lon: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """(H, W) mask of the union of boxes."""
    out = np.zeros((lat.size, lon.size), bool)
    for (south, north), lons in boxes:
        rows = (lat >= south) & (lat <= north)
        cols = np.ones(lon.size, bool) if lons is None else _lon_in(lon, *lons)
        out |= rows[:, None] & cols[None, :]
    return out


def grid_regions(ds: xr.Dataset, own: dict[str, RegionSpec] | None = None, standard: bool | None = None) -> Regions:
    """The regions of a store's grid (see the module docstring). Raises ValueError naming a region that holds no
    grid point or does not fit the grid."""
    H, W = ds["data"].shape[-2:]
    own = own or {}
    lonlat = "lat" in ds.dims and "lon" in ds.dims
    names, masks = [], []
    if lonlat:
        lat, lon = ds["lat"].values.astype("float64"), ds["lon"].values.astype("float64")
        weights = np.repeat(area_weights(lat)[:, None], W, axis=1)
        whole = "global" if is_global(lat, lon) else "all"
        names.append(whole)
        masks.append(np.ones((H, W), bool))
        if standard if standard is not None else whole == "global":
            for name, boxes in STANDARD_REGIONS.items():
                names.append(name)
                masks.append(box_mask(lat, lon, boxes))
    else:
        weights = np.ones((H, W))
        names.append("all")
        masks.append(np.ones((H, W), bool))
        if standard:
            raise ValueError("standard_regions: WeatherBench2's regions need a lon/lat grid; this grid has none")
    for name, spec in own.items():
        if name in names:
            raise ValueError(f"regions: {name!r} is already the name of a built-in region")
        if spec.lat is not None or spec.lon is not None:
            if not lonlat:
                raise ValueError(f"regions: {name!r} is a lat/lon box, but the grid has no coordinates: give rows "
                                 "and cols")
            lats = spec.lat or (-90.0, 90.0)
            mask = box_mask(lat, lon, [(lats, spec.lon)])
        else:
            rows, cols = spec.rows or (0, H), spec.cols or (0, W)
            if rows[1] > H or cols[1] > W:
                raise ValueError(f"regions: {name!r} rows {list(rows)}, cols {list(cols)} do not fit the {H}x{W} grid")
            mask = np.zeros((H, W), bool)
            mask[rows[0]:rows[1], cols[0]:cols[1]] = True
        names.append(name)
        masks.append(mask)
    for name, mask in zip(names, masks):
        if not mask.any():
            raise ValueError(f"regions: {name!r} holds no point of the {H}x{W} grid")
    return Regions(names, np.stack(masks), weights, lonlat)
