"""Stage specs: everything a stage needs, typed, validated once, JSON-serializable.

    spec = TrainSpec.from_catalog("era5-uk-t2m", epochs=2, lr=1e-3)   # catalog entry + explicit overrides
    result = pipelines.train.run(spec)

A spec is built from a catalog entry plus overrides (None means "the catalog's"); every override name is one of
the spec's options, the same name on the command line (`--batch-size`), in a flow's options and in Python. A
parameter added to a stage is added here and nowhere else: the `simcast` commands take their options from these
classes (`options()`), the flows pass overrides through, torchrun workers read the spec from a file.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError, field_validator

from data_catalog import CatalogError, DatasetEntry, load_preset
from data_catalog.schema import Scoring
from simvp import SimVPConfig
from simvp.trainer import TrainConfig

from .errors import InputError, UsageError
from .settings import Settings
from .timefmt import parse_hours, parse_lead, parse_step, parse_time

if TYPE_CHECKING:
    import xarray as xr

DEVICE = r"^(auto|cpu|cuda(:\d+)?)$"


def option(default: Any = ..., help: str = "", flag: str | None = None, positional: bool = False,
           repeatable: bool = False, **constraints) -> Any:
    """A spec field that users set (a command-line option, a flow override); constraints as pydantic's (ge=1)."""
    return Field(default, description=help, json_schema_extra={"option": True, "flag": flag, "positional": positional,
                                                              "repeatable": repeatable}, **constraints)


def derived(default: Any = ..., help: str = "") -> Any:
    """A spec field resolved from the catalog and settings, not an option."""
    return Field(default, description=help, json_schema_extra={"option": False})


class WindowSpec(BaseModel):
    """T_in frames in, T_out frames out, a start every `stride` steps; optional time-feature inputs."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    input: int = Field(ge=1, description="frames in (default: the catalog's)")
    output: int = Field(ge=1, description="frames out (default: the catalog's)")
    stride: int = Field(1, ge=1, description="steps between window starts")
    time_features: bool = Field(False, description="hour of day (day of week and holidays where the data have a "
                                                   "weekly rhythm) as extra inputs")

    @property
    def length(self) -> int:
        return self.input + self.output

    @classmethod
    def from_store(cls, ds: xr.Dataset, **overrides) -> "WindowSpec":
        w = json.loads(ds.attrs["window"])
        base = {"input": w["input"], "output": w["output"], "stride": w.get("stride", 1)}
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


@dataclasses.dataclass(frozen=True)
class Option:
    """One user-settable option of a spec (flattened: a nested window or trainer setting is an option too)."""

    name: str
    type: Any
    default: Any
    help: str
    flag: str | None = None
    positional: bool = False
    repeatable: bool = False


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    stage: ClassVar[str] = ""
    nested: ClassVar[dict[str, Any]] = {}  # field -> class whose fields are options too

    def dump(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def load(cls, path: str | Path):
        """A spec written by `dump` (e.g. the spec.json in a run folder)."""
        path = Path(path)
        try:
            return cls.model_validate_json(path.read_text())
        except OSError as e:
            raise InputError(path, f"spec file not readable: {e.strerror}") from None
        except ValidationError as e:
            raise InputError(path, f"not a {cls.stage} spec: {_first(e)[1]}") from None

    @classmethod
    def options(cls) -> list[Option]:
        out = []
        for name, f in cls.model_fields.items():
            extra = f.json_schema_extra or {}
            if name in cls.nested:
                out += _nested_options(cls.nested[name])
            elif extra.get("option"):
                out.append(Option(name, f.annotation, None if f.is_required() else f.default, f.description or "",
                                  extra.get("flag"), extra.get("positional", False), extra.get("repeatable", False)))
        return out

    @classmethod
    def parse(cls, overrides: dict) -> dict:
        """Overrides with numbers given as text ("3", "1e-3": the command line) converted; a bad one is a
        UsageError naming the option and the value."""
        types_ = {o.name: o.type for o in cls.options()}
        out = dict(overrides)
        for name, value in overrides.items():
            if isinstance(value, str) and name in types_:
                try:
                    out[name] = TypeAdapter(types_[name]).validate_python(value)
                except ValidationError as e:
                    raise UsageError(name, _first(e)[1]) from None
        return out

    @classmethod
    def option_names(cls) -> set[str]:
        return {o.name for o in cls.options()}


def _nested_options(kind) -> list[Option]:
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return [Option(f.name, hints[f.name], f.default, f.metadata.get("help", ""))
                for f in dataclasses.fields(kind) if not f.metadata.get("internal")]
    return [Option(n, f.annotation, f.default, f.description or "") for n, f in kind.model_fields.items()]


def _first(error: ValidationError) -> tuple[str, str]:
    e = error.errors()[0]
    loc = [str(p) for p in e["loc"] if not str(p).isdigit()]
    msg = e["msg"].removeprefix("Value error, ")
    kind = {"int_parsing": "an integer", "int_from_float": "an integer", "float_parsing": "a number",
            "bool_parsing": "true or false"}.get(e["type"])
    if kind:
        msg = f"{e['input']!r} is not {kind}"
    bound = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if e["type"] in bound:
        limit = next(iter(e.get("ctx", {}).values()), "?")
        msg = f"must be {bound[e['type']]} {limit}, got {e['input']!r}"
    if ": " in msg and msg.split(": ", 1)[0] in ("TrainConfig", "SimVPConfig"):
        field, msg = msg.split(": ", 1)[1].split(" ", 1)  # "TrainConfig: epochs must be >= 1"
        loc.append(field)
    return (loc[-1] if loc else "spec"), msg


def _unset(value) -> bool:
    return value is None or (isinstance(value, (list, tuple)) and not value)


def build(cls, values: dict, overrides: dict) -> Any:
    """cls(**values) with the flat overrides applied; a bad override is a UsageError naming it."""
    given = {k: v for k, v in overrides.items() if not _unset(v)}
    unknown = sorted(set(given) - cls.option_names())
    if unknown:
        raise UsageError(unknown[0], f"not an option of {cls.stage} (its options: "
                                     f"{', '.join(sorted(cls.option_names()))})")
    given = cls.parse(given)
    values = dict(values)
    for field, kind in cls.nested.items():
        names = {o.name for o in _nested_options(kind)}
        base = values.get(field) or {}
        base = dataclasses.asdict(base) if dataclasses.is_dataclass(base) else dict(base)
        values[field] = {**base, **{k: v for k, v in given.items() if k in names}}
    values.update({k: v for k, v in given.items() if k in cls.model_fields})
    try:
        return cls(**values)
    except ValidationError as e:
        option_name, msg = _first(e)
        raise UsageError(option_name, msg) from None


# ---- download -----------------------------------------------------------------------------------------

class DownloadSpec(Spec):
    stage: ClassVar[str] = "download"

    dataset: str = option(help="catalog entry", positional=True)
    entry: DatasetEntry = derived(help="the catalog entry")
    catalog: Path = derived(help="the catalog file the entry comes from")
    data_root: Path = derived(help="where the files go: the root of the entry's source patterns")
    check: bool = option(False, help="hash every downloaded file again and compare it with the record made at its "
                                     "download (default: a file whose size and modification time are unchanged "
                                     "counts as verified)")
    retries: int = option(3, help="times an interrupted transfer is resumed before the command gives up", ge=0)

    @classmethod
    def from_catalog(cls, dataset: str, settings: Settings | None = None, **overrides) -> "DownloadSpec":
        settings = settings or Settings.load()
        catalog = settings.catalog()
        entry = catalog[dataset]
        values = {"dataset": dataset, "entry": entry, "catalog": catalog.origins[dataset],
                  "data_root": settings.source_root(entry)}
        return build(cls, values, overrides)


# ---- ingest -------------------------------------------------------------------------------------------

class IngestSpec(Spec):
    stage: ClassVar[str] = "ingest"

    dataset: str = option(help="catalog entry", positional=True)
    entry: DatasetEntry = derived(help="the catalog entry")
    catalog: Path = derived(help="the catalog file the entry comes from")
    source_root: Path = derived(help="root of the entry's source patterns")
    source: str | None = option(None, help="glob of source files (for a Zarr-store entry: its URL or path), "
                                           "overriding the catalog's")
    store: Path = option(help="Zarr store to write (default: the catalog's, under the store root)")
    dask_address: str | None = option(None, help="run on this Dask scheduler, e.g. tcp://host:8786")
    force: bool = option(False, help="rebuild even when the store is current")

    @classmethod
    def from_catalog(cls, dataset: str, settings: Settings | None = None, **overrides) -> "IngestSpec":
        settings = settings or Settings.load()
        catalog = settings.catalog()
        return cls.from_entry(catalog[dataset], settings, catalog.origins[dataset], **overrides)

    @classmethod
    def from_entry(cls, entry: DatasetEntry, settings: Settings | None = None, catalog: Path | None = None,
                   **overrides) -> "IngestSpec":
        """For an entry that is not (or not yet) in a catalog file."""
        settings = settings or Settings.load()
        values = {"dataset": entry.name, "entry": entry, "catalog": catalog or Path("(given entry)"),
                  "source_root": settings.source_root(entry), "store": settings.store_path(entry)}
        return build(cls, values, overrides)


# ---- train --------------------------------------------------------------------------------------------

class TrainSpec(Spec):
    stage: ClassVar[str] = "train"
    nested: ClassVar[dict[str, Any]] = {"window": WindowSpec, "training": TrainConfig}

    dataset: str = option(help="catalog entry (its store must be ingested)", positional=True)
    store: Path = option(help="store to train on (default: the catalog's)")
    run_dir: Path = option(help="run folder (default: <runs root>/NAME-<time>)", flag="--out")
    resume: bool = option(False, help="continue the run in --out (default: the newest run of NAME) from last.pt")
    preset: str = option(help="released configuration: model size and recipe (default: the catalog's)")
    translator: Literal["gsta", "incepu", "tau"] = option(help="SimVP translator (default: the catalog's)")
    anchor_init: Literal["fitted", "zero"] = option(
        "fitted", help="with the model's anchor_trend and a residual lag of one day: start the per-lead trend "
                       "weights at the fitted linear forecast's least-squares values on the training split (an "
                       "untrained model is that forecast) or at zero (the previous day)")
    model: dict[str, Any] = derived(help="SimVP arguments: the preset's model with the catalog's overrides")
    window: WindowSpec = derived()
    training: TrainConfig = derived()
    _file: Path | None = PrivateAttr(None)  # the spec file it was read from (load), named in its errors

    @property
    def spec_file(self) -> Path | None:
        return self._file

    @classmethod
    def load(cls, path: str | Path) -> "TrainSpec":
        """A train spec file (spec.json), its model settings checked like the catalog's: a wrong name, type or
        range is one line naming the file and the field."""
        spec = super().load(path)
        known = {f.name for f in dataclasses.fields(SimVPConfig)}
        unknown = sorted(set(spec.model) - known)
        if unknown:
            raise InputError(path, f"field model.{unknown[0]}: not a SimVP setting "
                                   f"(known: {', '.join(sorted(known))})")
        try:
            SimVPConfig(**{**spec.model, "in_shape": (spec.window.input, 1, 8, 8), "out_frames": spec.window.output,
                           "translator": spec.translator})
        except (TypeError, ValueError) as e:
            field, _, problem = str(e).partition(" ")
            where = f"field model.{field}: {problem}" if field in known else f"field model: {e}"
            raise InputError(path, where) from None
        spec._file = Path(path)
        return spec

    @field_validator("model")
    @classmethod
    def _model_builds(cls, model):
        bad = sorted(set(model) & {"in_shape", "out_frames", "translator"})
        if bad:
            raise ValueError(f"model: {bad} come from the window and the translator option, not the model settings")
        return model

    @classmethod
    def from_catalog(cls, dataset: str, settings: Settings | None = None, **overrides) -> "TrainSpec":
        settings = settings or Settings.load()
        entry = settings.entry(dataset)
        overrides = cls.parse(overrides)
        if overrides.get("resume"):
            run_dir = Path(overrides.get("run_dir") or _default_run_dir(settings, dataset, True))
            earlier = run_dir / "spec.json"
            if earlier.is_file() and cls.load(earlier).dataset == dataset:
                # a resumed run continues with the settings it started with; options given now override them
                # (the trainer refuses an override that would change the run's trajectory)
                return build(cls, cls.load(earlier).model_dump(), {**overrides, "run_dir": run_dir.absolute()})
        t = entry.training
        preset_name = overrides.get("preset") or (t.preset if t else None)
        if preset_name is None:
            raise CatalogError(f"{settings.catalog().origins[dataset]}: entry {dataset!r} has no training "
                               "defaults; pass a preset")
        preset = load_preset(preset_name)
        catalog_training = t.trainer_settings() if t else {}
        training = {**preset.training, **catalog_training}
        epochs = overrides.get("epochs")
        if epochs is not None and "warmup_epochs" not in catalog_training and preset.training.get("warmup_epochs"):
            # a shortened run keeps the recipe's shape: warm up for the same share of it
            full = preset.training.get("epochs", epochs)
            training["warmup_epochs"] = preset.training["warmup_epochs"] * epochs / full
        _check_trainer_settings(settings, dataset, catalog_training)
        run_dir = overrides.pop("run_dir", None)
        if run_dir is None:
            run_dir = _default_run_dir(settings, dataset, bool(overrides.get("resume")))
        values = {
            "dataset": dataset, "store": settings.store_path(entry), "run_dir": Path(run_dir).absolute(),
            "preset": preset_name, "translator": (t.translator if t else "gsta"),
            "model": {**{k: v for k, v in preset.model.items() if k != "in_shape"}, **(t.model if t else {})},
            "window": {**entry.window.model_dump(), "time_features": bool(t and t.time_features)},
            "training": training,
        }
        spec = build(cls, values, overrides)
        spec.simvp_config(channels=1, grid=(8, 8), catalog=(settings, dataset))
        return spec

    def simvp_config(self, channels: int, grid: tuple[int, int], catalog=None) -> SimVPConfig:
        """The SimVP configuration for inputs of `channels` channels (data and time features) on `grid`."""
        try:
            return SimVPConfig(**{**self.model, "in_shape": (self.window.input, channels, *grid),
                                  "out_frames": self.window.output, "translator": self.translator})
        except (TypeError, ValueError) as e:
            where = f"{catalog[0].catalog().origins[catalog[1]]}: entry {catalog[1]!r}: " if catalog else ""
            raise CatalogError(f"{where}cannot build the model of preset {self.preset!r} for a "
                               f"{self.window.input} -> {self.window.output} window: {e}") from None


def _check_trainer_settings(settings: Settings, dataset: str, given: dict) -> None:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise CatalogError(f"{settings.catalog().origins[dataset]}: entry {dataset!r}: field training.{unknown[0]}: "
                           f"not a training setting (known: {', '.join(sorted(known))})")


def _default_run_dir(settings: Settings, dataset: str, resume: bool) -> Path:
    if resume:
        runs = settings.run_dirs(dataset)
        if not runs:
            raise UsageError("resume", f"there is no run of {dataset!r} under {settings.runs_root} to resume")
        return runs[-1]
    return settings.new_run_dir(dataset)


# ---- evaluate -----------------------------------------------------------------------------------------

class _ModelStage(Spec):
    """Fields of the stages that run a trained model on a store (evaluate, forecast)."""

    dataset: str = option(help="catalog entry", positional=True)
    checkpoint: Path = option(help="checkpoint (best.pt of a run)")
    store: Path = option(help="store (default: the catalog's)")
    device: str = option("auto", help="auto | cpu | cuda[:N]")
    lead_hours: float | None = option(None, help="horizon in hours; beyond the trained one by rollout "
                                                 "(default: the trained horizon)")

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        return _device_name(v)

    @field_validator("lead_hours")
    @classmethod
    def _lead(cls, v):
        return None if v is None else parse_hours(v, "lead_hours")


_EXTERNAL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
# the forecasters simcast scores itself, and the other top-level keys a metrics.json may hold
_RESERVED_NAMES = ("model", "persistence", "previous_day", "climatology", "units", "lead_hours", "trained_hours")


def parse_external(text: str, option: str = "external") -> tuple[str, str]:
    """'hres=gs://bucket/forecast.zarr' -> ('hres', 'gs://bucket/forecast.zarr')."""
    name, sep, url = str(text).partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url:
        raise UsageError(option, f"{text!r}: use NAME=URL, e.g. hres=gs://weatherbench2/datasets/hres/...zarr")
    if not _EXTERNAL_NAME.match(name):
        raise UsageError(option, f"{text!r}: the name {name!r} must start with a letter and hold only letters, "
                                 "digits, '_', '-' and '.'")
    if name in _RESERVED_NAMES:
        raise UsageError(option, f"{text!r}: {name!r} is taken by simcast's own scores; choose another name")
    return name, url


class EvaluateSpec(_ModelStage):
    stage: ClassVar[str] = "evaluate"

    split: Literal["test", "validation", "train"] = option("test", help="split to score on")
    out: Path = option(help="folder for the scores (default: eval-SPLIT beside the checkpoint)")
    batch_size: int = option(64, help="samples per batch", ge=1)
    external: list[str] = option([], help="an external forecast scored beside the model, NAME=URL: a Zarr store "
                                          "(gs://, https://, a path) in WeatherBench2's forecast layout (time: init "
                                          "time, prediction_timedelta: lead time) on the store's grid; every "
                                          "forecaster is then scored on the init times it holds; repeatable",
                                 repeatable=True)
    reference: str | None = option(None, help="forecaster the scorecard compares with (default: the external "
                                              "forecast when one is given, else the best reference forecast)")
    scoring: Scoring = derived(Scoring(), help="the catalog entry's scoring settings (regions, mask threshold)")

    @field_validator("external")
    @classmethod
    def _externals(cls, v):
        names = [parse_external(text)[0] for text in v]
        if len(set(names)) < len(names):
            raise UsageError("external", f"names repeat: {', '.join(names)}")
        return v

    @classmethod
    def from_catalog(cls, dataset: str, settings: Settings | None = None, **overrides) -> "EvaluateSpec":
        settings = settings or Settings.load()
        entry = settings.entry(dataset)
        checkpoint = overrides.get("checkpoint")
        if checkpoint is None:
            raise UsageError("checkpoint", "name the checkpoint to score")
        checkpoint = Path(checkpoint).absolute()
        split = overrides.get("split") or "test"
        values = {"dataset": dataset, "checkpoint": checkpoint, "store": settings.store_path(entry),
                  "out": checkpoint.parent / f"eval-{split}", "scoring": entry.scoring}
        if overrides.get("external"):  # a local forecast's path is kept absolute, as the checkpoint's
            from .remote import resolve

            given = overrides["external"]
            given = [given] if isinstance(given, str) else list(given)
            overrides = {**overrides, "external": [f"{n}={resolve(u)}" for n, u in map(parse_external, given)]}
        return build(cls, values, {**overrides, "checkpoint": checkpoint})


# ---- forecast -----------------------------------------------------------------------------------------

def parse_init_time(text: str, option: str = "init_times") -> tuple:
    """'2019-03-25T00:00' or 'start/end[/every]' -> (start, end, every); one time has end = start."""
    parts = str(text).split("/")
    if len(parts) == 1:
        t = parse_time(parts[0], option)
        return t, t, None
    if len(parts) not in (2, 3):
        raise UsageError(option, f"{text!r}: use a time, or start/end[/every] for a range")
    start, end = parse_time(parts[0], option), parse_time(parts[1], option)
    if end < start:
        raise UsageError(option, f"{text!r}: the range ends before it starts")
    every = parse_step(parts[2], option) if len(parts) == 3 else None
    return start, end, every


class ForecastSpec(_ModelStage):
    stage: ClassVar[str] = "forecast"

    out: Path = option(help="output path stem: writes OUT.zarr and OUT.nc")
    init_times: list[str] = option([], help="init time (the last observed frame), or start/end/every for a "
                                            "hindcast; repeatable; default: the latest time in the store",
                                   flag="--init-time", repeatable=True)
    geotiff: bool = option(False, help="also one GeoTIFF per lead time")
    archive: bool = option(False, help="also add the forecast to the data set's forecast archive (replacing "
                                       "the same init times; see --archive-path)")
    archive_path: Path = option(help="forecast archive, one Zarr store per data set (default: "
                                     "<output root>/archive/NAME.zarr); naming one implies --archive")

    @field_validator("init_times")
    @classmethod
    def _inits(cls, v):
        for text in v:
            parse_init_time(text)
        return v

    @classmethod
    def from_catalog(cls, dataset: str, settings: Settings | None = None, **overrides) -> "ForecastSpec":
        settings = settings or Settings.load()
        entry = settings.entry(dataset)
        for name in ("checkpoint", "out"):
            if overrides.get(name) is None:
                raise UsageError(name, f"name the {'checkpoint to forecast with' if name == 'checkpoint' else 'output path'}")
        values = {"dataset": dataset, "store": settings.store_path(entry),
                  "archive_path": settings.archive_path(dataset)}
        overrides = {**overrides, "checkpoint": Path(overrides["checkpoint"]).absolute(),
                     "out": Path(overrides["out"]).absolute()}
        if overrides.get("archive_path") is not None:
            overrides["archive_path"] = Path(overrides["archive_path"]).absolute()
            overrides["archive"] = True  # naming an archive means adding to it
        return build(cls, values, overrides)


# ---- verify -------------------------------------------------------------------------------------------

class VerifySpec(Spec):
    stage: ClassVar[str] = "verify"

    dataset: str = option(help="catalog entry", positional=True)
    archive_path: Path = option(help="forecast archive to verify (default: <output root>/archive/NAME.zarr)")
    store: Path = option(help="store with the observed truth (default: the catalog's)")
    out: Path = option(help="folder for the verification (default: <output root>/verification/NAME)")
    batch_size: int = option(16, help="init times read at a time", ge=1)
    reference: str | None = option(None, help="forecaster the scorecard compares with (default: the best "
                                              "reference forecast)")
    scoring: Scoring = derived(Scoring(), help="the catalog entry's scoring settings (regions, mask threshold)")

    @classmethod
    def from_catalog(cls, dataset: str, settings: Settings | None = None, **overrides) -> "VerifySpec":
        settings = settings or Settings.load()
        entry = settings.entry(dataset)
        values = {"dataset": dataset, "store": settings.store_path(entry), "scoring": entry.scoring,
                  "archive_path": settings.archive_path(dataset), "out": settings.verification_dir(dataset)}
        overrides = {k: (Path(v).absolute() if k in ("archive_path", "store", "out") and v is not None else v)
                     for k, v in overrides.items()}
        return build(cls, values, overrides)


# ---- report -------------------------------------------------------------------------------------------

class ReportSpec(Spec):
    stage: ClassVar[str] = "report"

    forecast: Path = option(help="forecast .zarr / .nc (or their stem)", positional=True)
    out: Path = option(help="report folder")
    truth: Path | None = option(None, help="store with the observed truth")
    metrics: Path | None = option(None, help="metrics.json from simcast evaluate")
    projection: str = option("PlateCarree", help="cartopy projection, e.g. PlateCarree, Robinson")
    leads: list[str] = option([], help="lead time to map, hours or e.g. 30min; repeatable; default: up to four",
                              flag="--lead", repeatable=True)
    verification: Path | None = option(None, help="verification folder (simcast verify) to link from the report "
                                                  "(default: the data set's, <output root>/verification/NAME, "
                                                  "when there is one)")

    @field_validator("leads")
    @classmethod
    def _leads(cls, v):
        for text in v:
            parse_lead(text, "leads")
        return v

    @classmethod
    def from_args(cls, **values) -> "ReportSpec":
        for name in ("forecast", "out"):
            if values.get(name) is None:
                raise UsageError(name, "is required")
        return build(cls, {}, values)


def _device_name(value: str) -> str:
    if not re.match(DEVICE, str(value)):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {value!r}")
    return value


SPECS = {s.stage: s for s in (DownloadSpec, IngestSpec, TrainSpec, EvaluateSpec, ForecastSpec, VerifySpec, ReportSpec)}
