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


def variable_attrs(name: str, file_attrs: dict | None = None) -> dict[str, str]:
    """CF attributes for a variable: the file's own units win, the table fills what is missing."""
    standard_name, units, long_name = VARIABLES.get(name, ("", "", name))
    file_attrs = file_attrs or {}
    attrs = {
        "standard_name": file_attrs.get("standard_name", standard_name),
        "units": file_attrs.get("units", units),
        "long_name": file_attrs.get("long_name", long_name),
    }
    return {k: str(v) for k, v in attrs.items() if v}
