"""Source values in the catalog's units: a variable whose file (or Zarr store) says it is in other units than the
catalog's (the variable's `units`, else simcast's table in pipelines/cf.py: t2m in K, ...) is converted where the
conversion is known (cf_units, i.e. UDUNITS-2: degC -> K, hPa -> Pa, ...), lazily, before the valid-range checks;
units that cannot be converted are refused in one line naming both. A source without units is taken as it is.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import xarray as xr

from .. import cf
from ..errors import InputError

# unit strings found in ERA5/WeatherBench files that UDUNITS does not read, and what they mean
ALIASES = {"(0 - 1)": "1", "(0-1)": "1", "0-1": "1", "fraction": "1"}
_UNKNOWN = {"", "unknown", "none", "undefined"}


def expected_units(var) -> str | None:
    """The units the catalog asks for a variable: its own `units`, else simcast's table's, else None."""
    return getattr(var, "units", None) or cf.VARIABLES.get(var.name, (None, None, None))[1] or None


@contextlib.contextmanager
def _quiet_stderr():
    """UDUNITS prints its parse errors on the process's stderr (fd 2); a failed parse is reported by us instead."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _unit(text: str):
    import cf_units

    with _quiet_stderr():
        try:
            return cf_units.Unit(ALIASES.get(text.strip(), text.strip()))
        except ValueError:
            return None


def in_catalog_units(da: xr.DataArray, var, source_units, where) -> xr.DataArray:
    """da, whose values are in `source_units` (the file's attribute; None or empty: unknown), in the catalog's
    units, with attrs["units"] saying so. InputError (naming `where`, the variable and both units) when the two
    cannot be converted."""
    want = expected_units(var)
    have = "" if source_units is None else str(source_units).strip()
    if want is None or have.lower() in _UNKNOWN or have == want:
        return da
    src, dst = _unit(have), _unit(want)
    if src is None or dst is None or not src.is_convertible(dst):
        why = (f"{have!r} is not a unit UDUNITS knows" if src is None else f"{want!r} is not a unit UDUNITS knows"
               if dst is None else "they measure different things")
        raise InputError(where, f"variable {var.name!r} is in {have!r}, the catalog expects {want!r} and simcast "
                                f"cannot convert one into the other ({why}); give the variable's units in the "
                                "catalog (variables: units) if the file's are right")
    offset = float(src.convert(0.0, dst))
    scale = float(src.convert(1.0, dst)) - offset
    if not np.isclose(float(src.convert(2.0, dst)), 2 * scale + offset, rtol=1e-9, atol=1e-12):
        raise InputError(where, f"variable {var.name!r} is in {have!r}, the catalog expects {want!r}: not a linear "
                                "conversion simcast applies; convert the file")
    out = da if (scale, offset) == (1.0, 0.0) else (da * np.float32(scale) + np.float32(offset)).astype(da.dtype)
    out.attrs = {**da.attrs, "units": want}
    return out
