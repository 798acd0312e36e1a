"""Typed schema of a catalog entry: what a data set is, where its files are, how it is split and windowed."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variable(_Strict):
    """One variable as named in the source files, optionally at chosen pressure levels."""

    name: str = Field(description="variable name inside the source files, e.g. t2m, z, t")
    levels: list[int] | None = Field(None, description="pressure levels (hPa) to keep; None for a surface field")
    pattern: str | None = Field(None, description="glob for the files holding this variable, relative to the data root")
    aliases: list[str] = Field(default_factory=list, description="other names this variable may carry in files")
    valid_range: tuple[float | None, float | None] | None = Field(
        None, description="[min, max] a physical value may take (null: unbounded on that side); ingest refuses values "
                          "outside it. Default: the known range of the variable (flows >= 0, temperatures 150..350 K)")
    units: str | None = Field(None, description="CF units, overriding the files' and simcast's table")
    standard_name: str | None = Field(None, description="CF standard name, overriding simcast's table")
    long_name: str | None = Field(None, description="human-readable name")

    @field_validator("valid_range")
    @classmethod
    def _ordered(cls, v):
        if v is not None and v[0] is not None and v[1] is not None and not v[0] < v[1]:
            raise ValueError(f"valid_range must be [min, max] with min < max, got {list(v)}")
        return v

    def channel_names(self) -> list[str]:
        return [self.name] if self.levels is None else [f"{self.name}{lev}" for lev in self.levels]


class Period(_Strict):
    """A split: absolute dates (end inclusive; a date alone covers the whole day), or the last stretch
    of data not yet taken by a later split (`last: 28D`), or everything before the later splits (`rest`)."""

    start: dt.datetime | dt.date | None = None
    end: dt.datetime | dt.date | None = None
    last: str | None = None
    rest: bool = False

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date_only_is_a_date(cls, v):
        # "2015-12-31" means the whole day, not its first instant
        if isinstance(v, str) and len(v.strip()) == 10:
            return dt.date.fromisoformat(v.strip())
        return v

    @model_validator(mode="after")
    def _one_form(self) -> "Period":
        forms = [self.start is not None or self.end is not None, self.last is not None, self.rest]
        if sum(forms) != 1:
            raise ValueError("give either start/end, or last, or rest: true")
        if forms[0] and (self.start is None or self.end is None):
            raise ValueError("an absolute period needs both start and end")
        if self.last is not None:
            try:
                if pd.Timedelta(self.last) <= pd.Timedelta(0):
                    raise ValueError
            except ValueError:
                raise ValueError(f"last must be a positive duration like 28D or 4W, got {self.last!r}") from None
        return self


class Splits(_Strict):
    train: Period
    validation: Period
    test: Period


class Window(_Strict):
    input: int = Field(ge=1, description="frames in (T_in)")
    output: int = Field(ge=1, description="frames out (T_out)")
    stride: int = Field(1, ge=1, description="step between window starts")

    @property
    def length(self) -> int:
        return self.input + self.output


class Extent(_Strict):
    """Geographic box in degrees. For lon/lat grids ingest crops to it; for other grids it georeferences them."""

    lat: tuple[float, float]
    lon: tuple[float, float]
    approximate: bool = Field(False, description="true where the box is known only roughly")

    @field_validator("lat")
    @classmethod
    def _lat_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (-90 <= v[0] < v[1] <= 90):
            raise ValueError(f"latitude range must satisfy -90 <= min < max <= 90, got {list(v)}")
        return v


class Region(_Strict):
    """A part of the grid scored on its own: a lat/lon box on lon/lat grids (bounds inclusive; a lon range whose
    start is east of its end wraps across the antimeridian or 0, e.g. [-12.5, 42.5] on a 0..360 grid), or row and
    column ranges (0-based, end exclusive) on grids without coordinates."""

    lat: tuple[float, float] | None = None
    lon: tuple[float, float] | None = None
    rows: tuple[int, int] | None = None
    cols: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> "Region":
        box, index = (self.lat, self.lon) != (None, None), (self.rows, self.cols) != (None, None)
        if box == index:
            raise ValueError("a region is a lat/lon box (lat, lon) or index ranges (rows, cols): give one of them")
        if self.lat is not None and not (-90 <= self.lat[0] < self.lat[1] <= 90):
            raise ValueError(f"lat must satisfy -90 <= min < max <= 90, got {list(self.lat)}")
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if v is not None and not (0 <= v[0] < v[1]):
                raise ValueError(f"{name} must satisfy 0 <= start < end, got {list(v)}")
        return self


class Scoring(_Strict):
    """How evaluation and verification score the data set, beyond the defaults."""

    regions: dict[str, Region] = Field(default_factory=dict, description="named regions scored besides the whole grid")
    standard_regions: bool | None = Field(
        None, description="WeatherBench2's standard regions (tropics, extra-tropics, Europe, ...); default: on "
                          "global lon/lat grids")
    mask_threshold: float | None = Field(
        None, description="LibCity-style masked MAE/MAPE/RMSE leave out true values at or below this; default: the "
                          "data's physical floor (counts: 0) where it has one, else no masked metrics")


class TimeRange(_Strict):
    """Times to read from a source: start and end inclusive (a date alone covers its whole day); either may be
    left out (from the first, to the last time)."""

    start: dt.datetime | dt.date | None = None
    end: dt.datetime | dt.date | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date_only_is_a_date(cls, v):
        return Period._date_only_is_a_date(v)  # "2015-12-31" means the whole day

    def bounds(self) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        """(first, last) instants selected; a date-only end is the last instant of that day."""
        start = None if self.start is None else pd.Timestamp(self.start)
        end = None if self.end is None else pd.Timestamp(self.end)
        if end is not None and not isinstance(self.end, dt.datetime):
            end = end + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
        return start, end

    @model_validator(mode="after")
    def _ordered(self) -> "TimeRange":
        start, end = self.bounds()
        if start is None and end is None:
            raise ValueError("give start, end or both")
        if start is not None and end is not None and end < start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class Source(_Strict):
    pattern: str | None = Field(None, description="glob of source files, relative to the root")
    url: str | None = Field(
        None, description="weatherbench2: a Zarr store instead of files: gs://, s3://, http(s):// (read anonymously "
                          "through fsspec; gs:// needs pip install simcast[cloud]) or a local path, relative to the root")
    time: TimeRange | None = Field(None, description="with url: the times to read, {start, end} (inclusive)")
    root: Literal["data", "bundled"] = Field(
        "data", description="data: the data root (SIMCAST_DATA_ROOT, default ./data); bundled: samples shipped with simcast"
    )

    @model_validator(mode="after")
    def _one_location(self) -> "Source":
        if (self.pattern is None) == (self.url is None):
            raise ValueError("give either pattern (source files) or url (a Zarr store)")
        if self.time is not None and self.url is None:
            raise ValueError("time selects from a Zarr store (url); files are selected by their pattern")
        return self


class DownloadFile(_Strict):
    """One file or archive of an entry's sources: fetched from `url` into the data root by `simcast download`, or,
    without a url, put there by hand as the entry's `download.instructions` say."""

    path: str = Field(description="where it goes, relative to the data root: the file itself, or for an archive the "
                                  "folder its members are unpacked into (keeping their names)")
    url: str | None = Field(None, description="http(s) address; none: no stable link, get it by hand (instructions)")
    archive: Literal["zip"] | None = Field(None, description="zip: the url serves a zip archive, unpacked into path")
    variable: str | None = Field(None, description="the entry's variable it holds (none: every variable, or not data)")
    size: int | None = Field(None, ge=0, description="bytes the url serves (or of the file), when known in advance")
    sha256: str | None = Field(None, description="SHA-256 of what the url serves (or of the file), when known")

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        parts = v.replace("\\", "/").split("/")
        if not v.strip() or v.startswith(("/", "~")) or ".." in parts:
            raise ValueError(f"must be a path inside the data root (relative, no '..'), got {v!r}")
        return v

    @field_validator("url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// address, got {v!r}")
        return v

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 64 or any(c not in "0123456789abcdefABCDEF" for c in v)):
            raise ValueError(f"must be 64 hexadecimal digits, got {v!r}")
        return None if v is None else v.lower()

    @model_validator(mode="after")
    def _archive_needs_url(self) -> "DownloadFile":
        if self.archive is not None and self.url is None:
            raise ValueError("an archive is downloaded: give its url")
        return self


class Download(_Strict):
    """Where an entry's source files come from (`simcast download NAME`)."""

    files: list[DownloadFile] = Field(min_length=1, description="the files and archives, each with its place")
    instructions: str | None = Field(None, description="where to get the files that have no url (shown, with the "
                                                        "places they go, while they are missing)")

    @model_validator(mode="after")
    def _instructions_for_manual_files(self) -> "Download":
        if self.instructions is None and any(f.url is None for f in self.files):
            raise ValueError("files without a url need instructions: where to get them")
        return self


class Training(BaseModel):
    """Default training settings of an entry: `simcast train NAME` with no options does this.

    Besides the fields below, any trainer setting (epochs, batch_size, lr, optimizer, weight_decay, schedule,
    warmup_epochs, patience, seed, ...: the fields of simvp's TrainConfig) may be given; they are checked when a
    training run is set up, with one line naming the entry and the setting."""

    model_config = ConfigDict(extra="allow", frozen=True)

    preset: str = Field(description="a released configuration (model size and recipe) in data_catalog/presets: "
                                    "weatherbench-t2m-5.625deg, taxibj or mmnist")
    translator: Literal["gsta", "incepu", "tau"] = "gsta"
    model: dict[str, Any] = Field(default_factory=dict, description="overrides of the preset's model, e.g. hid_T, N_T")
    time_features: bool = Field(False, description="hour of day, day of week (and holidays) as extra inputs")

    def trainer_settings(self) -> dict[str, Any]:
        """The trainer settings given besides preset, translator, model and time features."""
        return dict(self.model_extra or {})


class DatasetEntry(_Strict):
    name: str
    kind: Literal["weatherbench", "taxibj", "weatherbench2"]
    description: str = ""
    source: Source
    variables: list[Variable] = Field(min_length=1)
    time_step: str = Field(description="pandas offset alias, e.g. 1h or 30min")
    splits: Splits
    window: Window
    normalization: Literal["zscore", "minmax"] = "zscore"
    extent: Extent | None = None
    grid: tuple[int, int] | None = Field(None, description="expected (rows, cols); checked at ingest")
    store: str = Field(description="Zarr store path, relative to the store root unless absolute")
    gaps: Literal["error", "record"] = Field(
        "error", description="error: a gap, or a NaN, stops the ingest; record: listed in missing_times, windows skip it"
    )
    incomplete_days: Literal["keep", "drop"] = Field(
        "keep", description="taxibj, with gaps: record: keep the slots an incomplete day has, or drop the whole day (DeepST)"
    )
    holidays: str | None = Field(None, description="file of YYYYMMDD holidays, relative to the source root")
    time_zone: str | None = Field(
        None, description="time zone of the time stamps (IANA name, e.g. UTC, Asia/Shanghai); default: UTC for "
                          "weatherbench, the city's local time (unnamed) for taxibj")
    training: Training | None = None
    scoring: Scoring = Field(default_factory=Scoring)
    download: Download | None = Field(
        None, description="where the source files come from: `simcast download NAME` fetches them into the data root")

    @field_validator("time_step")
    @classmethod
    def _valid_step(cls, v: str) -> str:
        try:
            step = pd.Timedelta(v)
        except ValueError:
            raise ValueError(f"not a time step: {v!r} (use e.g. 1h, 6h, 30min)") from None
        if step <= pd.Timedelta(0):
            raise ValueError(f"time step must be positive, got {v!r}")
        return v

    @model_validator(mode="after")
    def _kind_rules(self) -> "DatasetEntry":
        if self.kind == "taxibj" and [v.name for v in self.variables] != ["inflow", "outflow"]:
            raise ValueError("taxibj entries have exactly the variables inflow and outflow")
        if (self.kind == "weatherbench2") != (self.source.url is not None):
            raise ValueError("weatherbench2 entries read one Zarr store (source.url); the other kinds read files "
                             "(source.pattern)")
        if self.kind == "weatherbench2" and any(v.pattern for v in self.variables):
            raise ValueError("weatherbench2 entries read every variable from source.url: no variable patterns")
        names = self.channel_names()
        if len(set(names)) != len(names):
            raise ValueError(f"channel names repeat: {names}")
        return self

    @model_validator(mode="after")
    def _download_variables(self) -> "DatasetEntry":
        names = [v.name for v in self.variables]
        for f in self.download.files if self.download else []:
            if f.variable is not None and f.variable not in names:
                raise ValueError(f"download: {f.path}: variable {f.variable!r} is not one of the entry's "
                                 f"({', '.join(names)})")
        return self

    @property
    def step(self) -> pd.Timedelta:
        return pd.Timedelta(self.time_step)

    def channel_names(self) -> list[str]:
        return [c for v in self.variables for c in v.channel_names()]
