"""CF metadata for the variables and coordinates simcast writes."""

from __future__ import annotations

# name in WeatherBench/ERA5 files -> (standard_name, units, long_name)
VARIABLES: dict[str, tuple[str, str, str]] = {
    "t2m": ("air_temperature", "K", "2 metre temperature"),
    "t": ("air_temperature", "K", "temperature"),
    "z": ("geopotential", "m**2 s**-2", "geopotential"),
    "u10": ("eastward_wind", "m s**-1", "10 metre U wind component"),
    "v10": ("northward_wind", "m s**-1", "10 metre V wind component"),
    "u": ("eastward_wind", "m s**-1", "U component of wind"),
    "v": ("northward_wind", "m s**-1", "V component of wind"),
    "q": ("specific_humidity", "kg kg**-1", "specific humidity"),
    "r": ("relative_humidity", "%", "relative humidity"),
    "tp": ("precipitation_amount", "m", "total precipitation"),
    "tisr": ("toa_incoming_shortwave_flux", "J m**-2", "TOA incident solar radiation"),
    "tcc": ("cloud_area_fraction", "1", "total cloud cover"),
    "inflow": ("", "flows per slot", "inflow: trips ending in the cell during the slot"),
    "outflow": ("", "flows per slot", "outflow: trips starting in the cell during the slot"),
}

LAT = {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y"}
LON = {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"}
TIME = {"standard_name": "time", "long_name": "time", "axis": "T"}
LEVEL = {"standard_name": "air_pressure", "long_name": "pressure level", "units": "hPa", "positive": "down"}


# physical bounds a value can take, in the units of the table above: ingest refuses values outside them unless the
# catalog names another valid_range (a variable in other units gets no default bounds)
VALID_RANGES: dict[str, tuple[float | None, float | None]] = {
    "t2m": (150.0, 350.0), "t": (150.0, 350.0),
    "u10": (-150.0, 150.0), "v10": (-150.0, 150.0), "u": (-250.0, 250.0), "v": (-250.0, 250.0),
    "q": (0.0, 0.1), "r": (0.0, 150.0), "tp": (0.0, None), "tisr": (0.0, None), "tcc": (0.0, 1.0),
    "inflow": (0.0, None), "outflow": (0.0, None),
}
_UNKNOWN = {"", "unknown", "none", "undefined"}


def variable_attrs(var, file_attrs: dict | None = None) -> dict[str, str]:
    """CF attributes of a catalog variable: the catalog's own first; then the file's units and long name and
    simcast's table of CF names (a file's `standard_name: unknown` is never copied)."""
    name = getattr(var, "name", var)
    standard_name, units, long_name = VARIABLES.get(name, ("", "", name))
    file_attrs = {k: str(v) for k, v in (file_attrs or {}).items() if str(v).strip().lower() not in _UNKNOWN}
    attrs = {
        "standard_name": getattr(var, "standard_name", None) or standard_name or file_attrs.get("standard_name", ""),
        "units": getattr(var, "units", None) or file_attrs.get("units", units),
        "long_name": getattr(var, "long_name", None) or file_attrs.get("long_name", long_name),
    }
    return {k: str(v) for k, v in attrs.items() if v}


def valid_range(var, units: str) -> tuple[float | None, float | None] | None:
    """The catalog's valid_range of a variable, else simcast's default for it when the data are in the table's
    units, else None."""
    if getattr(var, "valid_range", None) is not None:
        return tuple(var.valid_range)
    name = getattr(var, "name", var)
    if name in VALID_RANGES and units == VARIABLES[name][1]:
        return VALID_RANGES[name]
    return None
