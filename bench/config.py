"""The grid file: a strict schema, and a loader that reports every problem at once."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from bench.errors import ConfigError
from bench.registry import did_you_mean


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WithParams(BaseModel):
    """An entry whose extra keys are plugin parameters, checked against the plugin later."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class CodecEntry(WithParams):
    codec: str
    #: Operating points at the codec's own quality settings.
    qualities: list[int] = Field(default_factory=list)
    #: Operating points at target bitrates (bpp), the quality searched per image or per
    #: dataset (``rate_control``); the grid's ``targets_bpp`` when omitted.
    targets_bpp: list[float] | None = None
    #: Name in tables and plots; defaults to the codec name (must be unique in a grid).
    label: str | None = None


class DatasetEntry(WithParams):
    name: str


class ModelEntry(WithParams):
    name: str


class Schedule(Strict):
    """An optimisation schedule (AdamW, cosine decay, random horizontal flips)."""

    epochs: int = Field(ge=1, le=1000)
    batch_size: int = Field(default=64, ge=1, le=4096)
    lr: float = Field(gt=0, le=1.0)
    weight_decay: float = Field(default=1e-4, ge=0)
    #: Mixed precision for the steps: ``bf16`` (CPU or CUDA) or ``fp16`` (CUDA, with a
    #: gradient scaler); none: fp32. Part of the weights' keys when set.
    precision: Literal["bf16", "fp16"] | None = None
    #: A random resized crop of each training image before its flip (classification), as
    #: torchvision's reference recipe: the crop's share of the image's area is drawn from
    #: this range (``[0.08, 1.0]`` there) and its aspect ratio from 3/4..4/3, and the crop
    #: is resized back to the image's size. None: flips only.
    crop_scale: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _crop_range(self) -> Schedule:
        if self.crop_scale is not None and not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale {list(self.crop_scale)}: expected 0 < low <= high <= 1")
        return self

    @model_serializer(mode="wrap")
    def _without_defaults_added_later(self, handler: Any) -> dict[str, Any]:
        """fp32 (no ``precision``) and no crop are left out of the dump: the keys of
        schedules written before these fields existed stay the same."""
        out = handler(self)
        for name in ("precision", "crop_scale"):
            if out.get(name) is None:
                out.pop(name, None)
        return out


class Transfer(Strict):
    """Pixel-to-compressed knowledge transfer (Duan et al. 2023): squared error between the
    compressed-domain model's feature maps and the pixel model's on the original image."""

    #: Output strides of the tapped feature maps (the pixel model's last block at each).
    strides: list[int] = Field(default=[8, 16, 32], min_length=1)
    #: One weight per stride; 1.0 each when omitted.
    weights: list[float] | None = None

    @model_validator(mode="after")
    def _one_weight_per_stride(self) -> Transfer:
        if self.weights is not None and len(self.weights) != len(self.strides):
            raise ValueError(f"{len(self.weights)} weights for {len(self.strides)} strides")
        if any(s < 1 or s & (s - 1) for s in self.strides):
            raise ValueError(f"strides must be powers of two (got {self.strides})")
        return self

    def layer_weights(self) -> list[float]:
        return list(self.weights) if self.weights is not None else [1.0] * len(self.strides)


class Joint(Strict):
    """Joint encoder finetuning: the codec's analysis transform trained with the task model
    under ``rate + task_weight · task loss``; its rate is then measured on real bitstreams."""

    task_weight: float = Field(default=1.0, gt=0)


class DomainVariant(Strict):
    """One compressed-domain model: a scenario ``D:<label>`` in tables and plots."""

    #: ``aa`` (architecture adaptation), ``reshape`` (pixel-shuffle baseline), ``cresnet``.
    arch: Literal["aa", "reshape", "cresnet"] = "aa"
    #: Which latents the model reads, concatenated: ŷ, and σ̂ / μ̂ where the codec has them.
    inputs: list[Literal["y_hat", "scales", "means"]] = Field(default=["y_hat"], min_length=1)
    #: ``pixel``: start from the trained pixel model's weights where shapes allow; ``scratch``.
    init: Literal["pixel", "scratch"] = "pixel"
    #: cresnet only: pixel stages dropped after the stem (1 on ResNet-50: cResNet-39).
    drop_stages: int = Field(default=1, ge=0, le=3)
    transfer: Transfer | None = None
    joint: Joint | None = None
    #: Name in tables and plots (``D:<label>``); made from the settings when omitted.
    label: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

    def display(self) -> str:
        if self.label:
            return self.label
        extra = [p for p in self.inputs if p != "y_hat"]
        return (self.arch + (f"({'+'.join(extra)})" if extra else "") + ("+kt" if self.transfer else "")
                + ("+joint" if self.joint else ""))


class CompressedDomain(Strict):
    """Scenario D: models trained on the latents of the codecs that offer them."""

    train: Schedule
    #: Codec labels (neural codecs); every latent codec of the experiment when omitted.
    codecs: list[str] | None = None
    #: Of those codecs' qualities, the ones D models are trained at (one model per
    #: operating point and variant); all of them when omitted.
    qualities: list[int] | None = Field(default=None, min_length=1)
    #: Likewise of their target bitrates (with ``rate_control.mode: dataset``).
    targets_bpp: list[float] | None = Field(default=None, min_length=1)
    variants: list[DomainVariant] = Field(default_factory=lambda: [DomainVariant()], min_length=1)


class Reference(Strict):
    """A published rate–distortion curve in CompressAI's results JSON layout (``name``,
    ``results: {bpp, psnr-rgb, ms-ssim-rgb, ...}``), drawn beside the codecs' curves of a
    fidelity experiment and ranked with them; it can be the grid's anchor."""

    #: The JSON file (a path relative to the working directory, as dataset paths are).
    file: str
    #: Name in tables and plots; the file's ``name`` when omitted (unique among codec labels).
    label: str | None = Field(default=None, pattern=r"^[^\s].*$")


class Experiment(BaseModel):
    """One task × dataset × model and its scenarios. Keys beyond these fields are the
    scenarios' own sections (``finetune:`` for C, ``compressed_domain:`` for D), each
    checked against its scenario's schema when the grid is resolved (``bench.grid``).

    ``task: fidelity`` is a rate–distortion experiment: every codec's decoded images
    against the originals (PSNR, MS-SSIM, coding times), no model, scenario B only."""

    model_config = ConfigDict(extra="allow", frozen=True)

    task: str
    dataset: DatasetEntry
    #: The network; none for ``task: fidelity``.
    model: ModelEntry | None = None
    #: ``[B]`` when omitted for ``task: fidelity``; required for every other task.
    scenarios: list[str] | None = Field(default=None, min_length=1)
    #: Published curves to compare with (``task: fidelity`` only).
    references: list[Reference] = Field(default_factory=list)
    #: Codec labels this experiment uses; all of the grid's codecs when omitted.
    codecs: list[str] | None = None
    #: Scenario A's training (models trained from scratch); None for pretrained models.
    train: Schedule | None = None
    seed: int | None = None


class RateControl(Strict):
    """How a target bitrate becomes a quality setting (``bench.ratecontrol``)."""

    #: ``dataset``: one quality for the whole set, its mean bpp closest to the target
    #: (searched on the evaluated split; the train split uses the same quality).
    #: ``image``: every image its own quality, its bpp closest to the target.
    mode: Literal["dataset", "image"] = "dataset"
    #: Relative distance to the target within which a setting counts as reaching it; the
    #: closest setting within it is chosen, else the closest of all (flagged in the row).
    tolerance: float = Field(default=0.1, gt=0, lt=1)


class Analysis(Strict):
    """How the leaderboard compares codecs (``bench.report.ranking``)."""

    #: The codec (label) every Bjøntegaard delta is taken against; the grid's first codec
    #: when omitted.
    anchor: str | None = None
    #: Interpolation of the rate–metric curves (JVET's convention: pchip).
    interpolation: Literal["pchip", "akima", "cubic"] = "pchip"
    #: Also the fidelity deltas per image (each image's own rate–PSNR and rate–MS-SSIM
    #: curves), averaged over the images, beside those of the mean curves.
    per_item: bool = False
    #: The level of every bootstrap interval over the val images (leaderboard ``ci_low`` /
    #: ``ci_high``; ranking's BD-rate and BD-metric intervals and ``significant``).
    confidence: float = Field(default=0.95, gt=0.5, lt=1)


class Grid(Strict):
    name: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    seed: int = 0
    codecs: list[CodecEntry] = Field(min_length=1)
    #: Target bitrates (bpp) for every codec that does not list its own.
    targets_bpp: list[float] | None = None
    rate_control: RateControl = Field(default_factory=RateControl)
    analysis: Analysis = Field(default_factory=Analysis)
    experiments: list[Experiment] = Field(min_length=1)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top>"


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found by walking ``loc`` from ``model`` (for near misses)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = field.annotation
        while typing.get_origin(current) is not None:  # list[X], X | None
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[0] if args else None
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def format_validation_error(exc: ValidationError, model: type[BaseModel], prefix: tuple[Any, ...] = ()) -> list[str]:
    """One line per problem, each naming the key, with near misses for unknown keys."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = _loc(prefix + loc)
        if err["type"] == "extra_forbidden":
            hint = did_you_mean(str(loc[-1]), _fields_at(model, loc[:-1]))
            problems.append(f"{where}: unknown key.{hint}")
        elif err["type"] == "missing":
            problems.append(f"{where}: required key is missing")
        else:
            problems.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    return problems


def _operating_point_problems(raw: dict[str, Any]) -> list[str]:
    """Codecs with neither qualities nor targets (a misspelt key lands among a codec's
    plugin parameters, so it is named here, with the key it was probably meant to be)."""
    codecs = raw.get("codecs")
    if not isinstance(codecs, list) or raw.get("targets_bpp"):
        return []
    out = []
    for i, entry in enumerate(codecs):
        if not isinstance(entry, dict) or entry.get("qualities") or entry.get("targets_bpp"):
            continue
        for key in entry:
            if (hint := did_you_mean(str(key), ["qualities", "targets_bpp"])):
                out.append(f"codecs[{i}].{key}: unknown key.{hint}")
        out.append(f"codecs[{i}]: no operating points: give qualities or targets_bpp (here, or targets_bpp "
                   "for the whole grid)")
    return out


def parse_grid(raw: Any, source: str = "grid") -> Grid:
    """Structural validation of an already-parsed grid document."""
    if raw is None:
        raise ConfigError(["<top>: the grid is empty"], source)
    if not isinstance(raw, dict):
        raise ConfigError([f"<top>: expected a mapping of keys, got {type(raw).__name__}"], source)
    problems = _operating_point_problems(raw)
    try:
        grid = Grid.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(problems + format_validation_error(exc, Grid), source) from None
    if problems:
        raise ConfigError(problems, source)
    return grid


def load_grid(path: str | Path) -> Grid:
    """Read and structurally validate a grid file (plugin-level checks: ``bench.validate``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError([f"grid file not found"], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read grid file: {exc}"], str(path)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{where}invalid YAML ({problem})"], str(path)) from None
    return parse_grid(raw, str(path))
