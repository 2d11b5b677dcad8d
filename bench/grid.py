"""From a validated grid file to plugins and cells, with every problem reported at once."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from pydantic import ValidationError

from bench.codecs import CODECS, Codec, OperatingPoint
from bench.config import CodecEntry, Experiment, Grid, Schedule, format_validation_error
from bench.keys import cell_key, harness_parts, identity_key, reference_key, setting_identity
from bench.datasets import DATASETS, Dataset
from bench.errors import BenchError, ConfigError, UnknownNameError
from bench.fidelity import FIDELITY, FidelityTask, RateDistortion
from bench.models import MODELS, Model
from bench.references import ReferenceCurve, load_reference
from bench.ratecontrol import MAX_TARGET, Target
from bench.registry import Registry, did_you_mean
from bench.scenarios import SCENARIOS, Scenario
from bench.tasks import TASKS, Task

P = TypeVar("P")


@dataclass
class ResolvedCodec:
    label: str
    codec: Codec
    points: list[OperatingPoint]
    #: ``codec.identity()`` when the grid was resolved: every key of the run uses this one,
    #: and a transcode whose codec no longer matches it (weights replaced mid-run) fails.
    identity: dict[str, Any] = field(default_factory=dict)
    #: Operating points given as target bitrates (the quality is searched at run time).
    targets: list[Target] = field(default_factory=list)

    def settings(self) -> list[int | Target]:
        """Every operating point: the qualities, then the targets."""
        return [p.quality for p in self.points] + list(self.targets)


@dataclass
class ResolvedExperiment:
    index: int
    entry: Experiment
    #: The task; a ``FidelityTask`` for a rate–distortion experiment (``task: fidelity``).
    task: Task | FidelityTask
    dataset: Dataset
    #: The network; None in a rate–distortion experiment.
    model: Model | None
    scenarios: list[Scenario]
    codecs: list[ResolvedCodec]
    seed: int
    #: The scenarios' own settings, validated against their schemas, by section name.
    sections: dict[str, Any] = field(default_factory=dict)
    #: Published curves to compare with (fidelity experiments), read when the grid was resolved.
    references: list[ReferenceCurve] = field(default_factory=list)

    @property
    def model_label(self) -> str:
        if self.model is None:
            return ""
        arch = getattr(self.model.params, "arch", None)
        return f"{self.model.name}:{arch}" if arch else self.model.name

    @property
    def trains_reference(self) -> bool:
        """Whether scenario A's model is trained here (on the train split) rather than pretrained."""
        return self.model is not None and not self.model.pretrained

    def identity(self) -> dict[str, Any]:
        """What the experiment's scenario-A model depends on, besides the train split's content."""
        return {
            "task": self.task.identity(), "model": self.model.identity() if self.model is not None else None,
            "dataset": self.dataset.identity(), "seed": self.seed,
            "train": self.entry.train.model_dump() if self.entry.train else None,
        }

    def schedules(self) -> list[tuple[str, Schedule, bool]]:
        """Every training schedule of the experiment: (its place in the grid, the schedule,
        whether it trains on latents), for A's ``train`` and each scenario section that is
        a schedule or holds one as ``train`` (D's ``compressed_domain.train``)."""
        out = [("train", self.entry.train, False)] if self.entry.train is not None else []
        for name, section in self.sections.items():
            if isinstance(section, Schedule):
                out.append((name, section, False))
            elif isinstance(getattr(section, "train", None), Schedule):
                out.append((f"{name}.train", section.train, True))
        return out

    def reference_key(self, train: dict[str, str] | None) -> str:
        """The scenario-A weights' key, from the train split's content (``bench.keys.split_content``)."""
        return reference_key(self.identity(), train or {})

    def cell(self, scenario: Scenario, rc: ResolvedCodec | None = None, setting: int | Target | None = None,
             section: Any = None, variant: str | None = None) -> Cell:
        """One of the experiment's cells for ``scenario``: at a codec's operating point, or
        on the originals (no codec). ``section`` is what of the scenario's own settings the
        cell depends on; the cell reads the val split, and the train split when it or the
        scenario-A model trains on it."""
        ident: dict[str, Any] = {**self.identity(), "scenario": scenario.identity(), "section": section}
        if rc is not None and setting is not None:
            ident.update({"codec": rc.identity, **setting_identity(setting)})
        # every split the cell reads: val, what its scenario reads coded, train when it or A trains
        reads = {"val", *scenario.transcodes} | ({"train"} if scenario.trains or self.trains_reference else set())
        splits = tuple(sorted(reads, key=lambda s: (s != "val", s)))
        target = setting if isinstance(setting, Target) else None
        return Cell(self, task=self.task.name, model=self.model_label, dataset=self.dataset.label(),
                    scenario=scenario.name, codec_label=rc.label if rc is not None else None,
                    quality=setting if isinstance(setting, int) else None, seed=self.seed, ident=ident,
                    splits=splits, variant=variant, target=target)

    def scenario(self, name: str) -> Scenario:
        return next(s for s in self.scenarios if s.name == name)


@dataclass(frozen=True)
class Cell:
    """One (task, model, dataset, scenario, codec, operating point, seed): the unit of work."""

    exp: ResolvedExperiment = field(compare=False, hash=False, repr=False)
    task: str
    model: str
    dataset: str
    scenario: str
    codec_label: str | None
    quality: int | None
    seed: int
    #: Everything the cell's result depends on but the data (``bench.keys``).
    ident: dict[str, Any] = field(compare=False, hash=False, repr=False)
    #: The splits whose content the result depends on.
    splits: tuple[str, ...] = ("val",)
    #: Scenario D: the compressed-domain variant's label.
    variant: str | None = None
    #: An operating point given as a bitrate (``quality`` is then None: it is searched).
    target: Target | None = None
    #: The cell's key: its identity and the content of its splits; empty until the data is read.
    key: str = ""

    @property
    def setting(self) -> int | Target | None:
        """The operating point as the grid gives it: a quality, a target, or None (A)."""
        return self.target if self.target is not None else self.quality

    @property
    def scenario_label(self) -> str:
        """The scenario as tables and plots name it: ``D:<variant>`` for scenario D."""
        return f"{self.scenario}:{self.variant}" if self.variant else self.scenario

    def keyed(self, contents: dict[str, dict[str, str]]) -> Cell:
        """This cell with its key, from the content of its splits (by split name)."""
        harness = harness_parts(coded=self.codec_label is not None, trained="train" in self.splits,
                                searched=self.target is not None)
        names = {"dataset": self.dataset, "codec": self.codec_label, "variant": self.variant}
        return replace(self, key=cell_key(self.ident, {split: contents[split] for split in self.splits}, harness,
                                          names))

    def describe(self) -> str:
        op = f" {self.codec_label}@{self.setting}" if self.codec_label else ""
        return f"{self.task}/{self.model}/{self.dataset} {self.scenario_label}{op} seed={self.seed}"


@dataclass
class Plan:
    grid: Grid
    experiments: list[ResolvedExperiment]
    cells: list[Cell]
    #: Where the grid came from (its file), for messages.
    source: str = "grid"

    def record(self) -> dict[str, Any]:
        """What a run's record keeps of the grid: the grid, and the content of the published
        curves it names (the reports are drawn from the record, never from those files)."""
        out = self.grid.model_dump(mode="json")
        curves = [{"experiment": exp.index, "dataset": exp.dataset.label(), **ref.record()}
                  for exp in self.experiments for ref in exp.references]
        if curves:
            out["reference_curves"] = curves
        return out



def _lookup(registry: Registry[P], name: str, where: str, problems: list[str]) -> P | None:
    try:
        return registry.get(name)
    except UnknownNameError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _instantiate(cls: type, params: dict[str, Any], where: str, problems: list[str]) -> Any | None:
    try:
        return cls(cls.Params(**params))
    except ValidationError as exc:
        problems.extend(format_validation_error(exc, cls.Params, prefix=(where,)))
        return None


def _target_problems(where: str, values: list[float]) -> list[str]:
    out = [f"{where}[{j}]: a target must be above 0 and at most {MAX_TARGET:g} bpp (got {t})"
           for j, t in enumerate(values) if not 0 < t <= MAX_TARGET]
    if len(set(values)) != len(values):
        out.append(f"{where}: repeated values {values}")
    return out


def _targets(i: int, entry: CodecEntry, grid: Grid, problems: list[str]) -> list[Target]:
    """The codec's operating points given as bitrates, checked."""
    if entry.targets_bpp is not None:  # the grid's own are checked once, in resolve()
        problems.extend(_target_problems(f"codecs[{i}].targets_bpp", entry.targets_bpp))
    values = entry.targets_bpp if entry.targets_bpp is not None else (grid.targets_bpp or [])
    rc = grid.rate_control
    return [Target(float(t), rc.mode, rc.tolerance) for t in values]


def _resolve_codec(i: int, entry: CodecEntry, grid: Grid, problems: list[str]) -> ResolvedCodec | None:
    where = f"codecs[{i}]"
    targets = _targets(i, entry, grid, problems)
    cls = _lookup(CODECS, entry.codec, f"{where}.codec", problems)
    if cls is None:
        return None
    codec = _instantiate(cls, entry.params, where, problems)
    if codec is None:
        return None
    for j, q in enumerate(entry.qualities):
        if (why := codec.check_quality(q)) is not None:
            problems.append(f"{where}.qualities[{j}]: {why}")
    if len(set(entry.qualities)) != len(entry.qualities):
        problems.append(f"{where}.qualities: repeated values {entry.qualities}")
    if (why := codec.unavailable_reason()) is not None:
        problems.append(f"{where} ({entry.codec}): unavailable: {why}")
    else:
        for j, q in enumerate(entry.qualities):
            if codec.check_quality(q) is None and (why := codec.unavailable_reason(q)) is not None:
                problems.append(f"{where}.qualities[{j}] ({entry.codec} at {q}): unavailable: {why}")
    label = entry.label or entry.codec
    return ResolvedCodec(label, codec, [OperatingPoint(q) for q in entry.qualities], codec.identity(), targets)


def _sections(i: int, entry: Experiment, scenarios: list[type[Scenario]], problems: list[str],
              unknown: bool = False) -> dict[str, Any]:
    """The experiment's keys beyond its own fields: each must be the section of one of its
    scenarios, and is validated against that scenario's schema. (With an ``unknown``
    scenario name among them, a section without its scenario is not named: the unknown
    name is the one problem.)"""
    where, out = f"experiments[{i}]", {}
    own = {s.section: s for s in scenarios if s.section}
    for key, value in (entry.model_extra or {}).items():
        if key in own:
            if value is None:
                continue
            schema = own[key].Section
            try:
                out[key] = schema.model_validate(value) if schema is not None else value
            except ValidationError as exc:
                problems.extend(format_validation_error(exc, schema, prefix=("experiments", i, key)))
            continue
        other = next((n for n in SCENARIOS.names() if _section_of(n) == key), None)
        if other is not None:
            if value is not None and not unknown:
                problems.append(f"{where}.{key}: {key} is set but scenarios has no {other}")
            continue
        known = list(Experiment.model_fields) + [n for n in map(_section_of, SCENARIOS.names()) if n]
        problems.append(f"{where}.{key}: unknown key.{did_you_mean(key, known)}")
    return out


def _section_of(name: str) -> str | None:
    try:
        return SCENARIOS.get(name).section
    except BenchError:  # a broken plugin: `bench ls scenarios` says why
        return None


def _resolve_experiment(
    i: int, entry: Experiment, grid: Grid, codecs: dict[str, ResolvedCodec], problems: list[str]
) -> ResolvedExperiment | None:
    where = f"experiments[{i}]"
    before = len(problems)
    ds_cls = _lookup(DATASETS, entry.dataset.name, f"{where}.dataset.name", problems)
    dataset = _instantiate(ds_cls, entry.dataset.params, f"{where}.dataset", problems) if ds_cls else None
    if dataset is not None:
        problems.extend(f"{where}.dataset: {p}" for p in dataset.problems())
    labels = entry.codecs if entry.codecs is not None else list(codecs)
    for j, label in enumerate(labels):
        if label not in codecs:
            problems.append(f"{where}.codecs[{j}]: no codec labelled {label!r} in the grid.{did_you_mean(label, list(codecs))}")
    if entry.task == FIDELITY:
        return _resolve_fidelity(i, entry, grid, dataset, [codecs.get(label) for label in labels], problems, before)
    if entry.references:
        problems.append(f"{where}.references: published curves are compared in a '{FIDELITY}' experiment "
                        f"(task {entry.task!r} has rate–accuracy curves)")
    task_cls = _lookup(TASKS, entry.task, f"{where}.task", problems)
    if task_cls is None and did_you_mean(entry.task, [FIDELITY]):
        problems[-1] += f" (or {FIDELITY!r}: rate–distortion only)"
    if entry.model is None:
        problems.append(f"{where}.model: required key is missing (task {entry.task!r} evaluates a model)")
    if entry.scenarios is None:
        problems.append(f"{where}.scenarios: required key is missing")
    model_cls = _lookup(MODELS, entry.model.name, f"{where}.model.name", problems) if entry.model else None
    scenarios = [_lookup(SCENARIOS, s, f"{where}.scenarios[{j}]", problems) for j, s in enumerate(entry.scenarios or [])]
    sections = _sections(i, entry, [s for s in scenarios if s is not None], problems,
                         unknown=None in scenarios)
    model = _instantiate(model_cls, entry.model.params, f"{where}.model", problems) if model_cls and entry.model else None
    if model is not None and (why := model.unavailable_reason()) is not None:
        problems.append(f"{where}.model ({model.name}): unavailable: {why}")
    if len(problems) > before or task_cls is None or dataset is None or model is None or entry.scenarios is None:
        return None
    task = task_cls()
    problems.extend(f"{where}: {p}" for p in task.problems(dataset, model))
    if model.pretrained and entry.train is not None:
        problems.append(f"{where}.train: model {model.name!r} is pretrained; scenario A does not train it (remove 'train')")
    if not model.pretrained and entry.train is None:
        problems.append(f"{where}.train: model {model.name!r} is trained from scratch and needs a 'train' schedule")
    resolved = ResolvedExperiment(
        index=i, entry=entry, task=task, dataset=dataset, model=model,
        scenarios=[s() for s in scenarios if s is not None],
        codecs=[codecs[label] for label in labels], seed=entry.seed if entry.seed is not None else grid.seed,
        sections=sections,
    )
    for scenario in resolved.scenarios:
        problems.extend(f"{where}.scenarios ({scenario.name}): {p}" for p in scenario.problems(resolved))
    if len(set(entry.scenarios)) != len(entry.scenarios):
        problems.append(f"{where}.scenarios: repeated names {entry.scenarios}")
    problems.extend(_crop_problems(resolved, where))
    return resolved


def _resolve_fidelity(i: int, entry: Experiment, grid: Grid, dataset: Dataset | None,
                      codecs: list[ResolvedCodec | None], problems: list[str], before: int) -> ResolvedExperiment | None:
    """A rate–distortion experiment: its dataset, codecs and published curves, no model."""
    where = f"experiments[{i}]"
    if entry.model is not None:
        problems.append(f"{where}.model: a {FIDELITY} experiment measures the codecs alone (remove 'model')")
    if entry.train is not None:
        problems.append(f"{where}.train: a {FIDELITY} experiment trains nothing (remove 'train')")
    if entry.scenarios is not None and entry.scenarios != ["B"]:
        problems.append(f"{where}.scenarios: a {FIDELITY} experiment has scenario B only, the decoded images "
                        f"(got {entry.scenarios})")
    for key in entry.model_extra or {}:
        problems.append(f"{where}.{key}: unknown key for a {FIDELITY} experiment."
                        f"{did_you_mean(key, ['references', 'codecs', 'dataset', 'seed'])}")
    references = []
    for j, ref in enumerate(entry.references):
        try:
            references.append(load_reference(ref.file, ref.label))
        except ConfigError as exc:
            problems.extend(f"{where}.references[{j}]: {p}" for p in exc.problems)
    if len(problems) > before or dataset is None:
        return None
    return ResolvedExperiment(
        index=i, entry=entry, task=FidelityTask(), dataset=dataset, model=None, scenarios=[RateDistortion()],
        codecs=[rc for rc in codecs if rc is not None], seed=entry.seed if entry.seed is not None else grid.seed,
        references=references,
    )


def _crop_problems(exp: ResolvedExperiment, where: str) -> list[str]:
    """A random resized crop is a pixel augmentation a task takes (``Task.augmentation``:
    classification does): a task that does not, and scenario D's latents, are refused one."""
    out = []
    for name, schedule, on_latents in exp.schedules():
        if schedule.crop_scale is None:
            continue
        if on_latents:
            out.append(f"{where}.{name}.crop_scale: scenario D trains on latents, which are not cropped")
        elif exp.task.augmentation(schedule) is None:
            out.append(f"{where}.{name}.crop_scale: {exp.task.name} takes no random resized crops "
                       "(it trains with flips only)")
    return out


def resolve(grid: Grid, source: str = "grid") -> Plan:
    """Resolve every name and parameter of ``grid``; a ``ConfigError`` with all problems."""
    problems: list[str] = _target_problems("targets_bpp", grid.targets_bpp or [])
    codecs: dict[str, ResolvedCodec] = {}
    for i, entry in enumerate(grid.codecs):
        rc = _resolve_codec(i, entry, grid, problems)
        label = entry.label or entry.codec
        if label in codecs or (rc is None and label in [e.label or e.codec for e in grid.codecs[:i]]):
            problems.append(f"codecs[{i}]: label {label!r} is used twice (set 'label:' to tell them apart)")
        elif rc is not None:
            codecs[label] = rc
    experiments = []
    for i, entry in enumerate(grid.experiments):
        exp = _resolve_experiment(i, entry, grid, codecs, problems)
        if exp is not None:
            experiments.append(exp)
    codec_labels = [e.label or e.codec for e in grid.codecs]
    reference_labels = {ref.label for exp in experiments for ref in exp.references}
    for exp in experiments:
        seen_here: set[str] = set()
        for j, ref in enumerate(exp.references):
            if ref.label in codec_labels or ref.label in seen_here:
                problems.append(f"experiments[{exp.index}].references[{j}]: label {ref.label!r} is used twice "
                                "(set 'label:' to tell them apart)")
            seen_here.add(ref.label)
    anchor = grid.analysis.anchor
    if anchor is not None and anchor not in codec_labels and anchor not in reference_labels:
        labels = codec_labels + sorted(reference_labels)
        problems.append(f"analysis.anchor: no codec or reference curve labelled {anchor!r} in the grid."
                        f"{did_you_mean(anchor, labels)}")
    if problems:
        raise ConfigError(problems, source)
    cells = [c for exp in experiments for scenario in exp.scenarios for c in scenario.cells(exp)]
    seen: dict[str, Cell] = {}
    for c in cells:
        same = identity_key(c.ident)
        if same in seen:
            problems.append(f"experiments[{c.exp.index}]: cell {c.describe()} repeats experiments[{seen[same].exp.index}]")
        seen[same] = c
    if problems:
        raise ConfigError(problems, source)
    return Plan(grid, experiments, cells, source)
