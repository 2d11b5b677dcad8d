"""One generic registry for every kind of plugin (codecs, tasks, models, datasets, scenarios).

Entries are objects or lazy ``"module:attr"`` strings; third-party plugins come in through
entry points (``[project.entry-points."bench.codecs"]``). Every entry is checked by the same
validator, ``PluginKind``, when it is registered: the kind's base class, its required class
attributes, the base class's methods called with the same parameters (pluggy checks a hook
implementation's arguments against the hook's the same way), and the class's ``name`` equal
to the name it is registered under.

A third-party plugin that fails (an import error, an invalid class, a name given twice) breaks
only its own name: the others load, ``names()`` still lists it, ``broken()`` says why, and
``get`` raises a one-line ``BrokenPluginError`` naming the distribution it comes from.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from bench.errors import BrokenPluginError, DuplicatePluginError, PluginError, UnknownNameError

T = TypeVar("T")

BUILT_IN = "bench (built-in)"


def did_you_mean(name: str, choices: list[str]) -> str:
    """`` Did you mean: jpeg?`` for the closest choices, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.7)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def one_line(exc: BaseException) -> str:
    """``exc`` as one line: its type (unless it is one of bench's own errors) and message."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (PluginError, DuplicatePluginError, UnknownNameError)):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- the one validator ------------------------------------------------------------------------

_METHOD_TYPES = (staticmethod, classmethod)


def _is_method(raw: object) -> bool:
    return inspect.isfunction(raw) or isinstance(raw, _METHOD_TYPES)


def _call_parameters(raw: object) -> list[inspect.Parameter]:
    """The parameters a caller passes to ``raw`` through an instance (``self``/``cls`` dropped)."""
    func = raw.__func__ if isinstance(raw, _METHOD_TYPES) else raw
    params = list(inspect.signature(func).parameters.values())  # follows __wrapped__
    return params if isinstance(raw, staticmethod) else params[1:]


def _display(owner: str, attr: str, raw: object) -> str:
    """``Codec.encode(self, images, point)``: a signature without annotations."""
    func = raw.__func__ if isinstance(raw, _METHOD_TYPES) else raw
    sig = inspect.signature(func)
    bare = sig.replace(parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
                       return_annotation=sig.empty)
    return f"{owner}.{attr}{bare}"


def signature_mismatch(expected: list[inspect.Parameter], got: list[inspect.Parameter]) -> str | None:
    """Why a method taking ``got`` cannot be called the way one taking ``expected`` is
    (same positional names in the same order, no extra required parameter), or None."""
    P = inspect.Parameter
    positional = (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)
    e_pos = [p for p in expected if p.kind in positional]
    g_pos = [p for p in got if p.kind in positional]
    g_names = {p.name: p for p in got}
    g_args = any(p.kind is P.VAR_POSITIONAL for p in got)
    g_kwargs = any(p.kind is P.VAR_KEYWORD for p in got)
    e_args = any(p.kind is P.VAR_POSITIONAL for p in expected)
    for i, want in enumerate(e_pos):
        if i >= len(g_pos):
            if not g_args:
                return f"parameter {want.name!r} is missing"
            continue
        have = g_pos[i]
        if want.kind is P.POSITIONAL_OR_KEYWORD and have.name != want.name:
            return f"parameter {i + 1} is {have.name!r}, expected {want.name!r}"
    for have in g_pos[len(e_pos):]:
        if have.default is P.empty and not e_args:
            return f"parameter {have.name!r} is required but never passed"
    for want in (p for p in expected if p.kind is P.KEYWORD_ONLY):
        if want.name not in g_names and not g_kwargs:
            return f"keyword parameter {want.name!r} is missing"
    for have in (p for p in got if p.kind is P.KEYWORD_ONLY):
        if have.default is P.empty and have.name not in {p.name for p in expected}:
            return f"keyword parameter {have.name!r} is required but never passed"
    if e_args and not g_args:
        return "*args is missing"
    if any(p.kind is P.VAR_KEYWORD for p in expected) and not g_kwargs:
        return "**kwargs is missing"
    return None


def _base_methods(base: type) -> dict[str, tuple[type, object]]:
    """The methods ``base`` defines for plugins to call or override: its public ones, and
    ``__init__`` when the kind defines one (the harness builds plugins through it)."""
    out: dict[str, tuple[type, object]] = {}
    for klass in reversed(base.__mro__):
        if klass.__module__ in ("builtins", "abc", "typing"):
            continue
        for attr, raw in vars(klass).items():
            if (attr == "__init__" or not attr.startswith("_")) and _is_method(raw):
                out[attr] = (klass, raw)
    return out


@dataclass(frozen=True)
class PluginKind:
    """What a plugin of one kind is: a subclass of ``base`` with the class ``attributes``
    set (name to expected type), whose overrides of the base's methods take the same
    parameters, registered under its own ``name``. Call it as a registry's ``validate``."""

    base: type
    attributes: Mapping[str, type | tuple[type, ...]] = field(default_factory=lambda: {"name": str})

    def problems(self, name: str, obj: object) -> list[str]:
        """Everything wrong with ``obj`` as this kind's plugin called ``name``."""
        base = self.base
        if not (isinstance(obj, type) and issubclass(obj, base)):
            return [f"{obj!r} is not a subclass of {base.__module__}.{base.__qualname__}"]
        out = []
        if abstract := getattr(obj, "__abstractmethods__", None):
            out.append(f"{obj.__name__} does not implement {', '.join(sorted(abstract))}")
        for attr, kind in self.attributes.items():
            if not hasattr(obj, attr):
                out.append(f"{obj.__name__} has no class attribute {attr!r}")
            elif not isinstance(value := getattr(obj, attr), kind):
                want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
                out.append(f"{obj.__name__}.{attr} is {value!r}, expected a {want}")
        own = getattr(obj, "name", None)
        if "name" in self.attributes and isinstance(own, str) and own != name:
            out.append(f"registered as {name!r} but {obj.__name__}.name is {own!r} (they must be equal: "
                       f"workers look the plugin up by its name)")
        for attr, (owner, expected) in _base_methods(base).items():
            got = inspect.getattr_static(obj, attr)
            if got is expected:
                continue
            if not _is_method(got):
                out.append(f"{obj.__name__}.{attr} is {type(got).__name__}, expected a method like "
                           f"{_display(owner.__name__, attr, expected)}")
                continue
            why = signature_mismatch(_call_parameters(expected), _call_parameters(got))
            if why is not None:
                out.append(f"{_display(obj.__name__, attr, got)} does not match "
                           f"{_display(owner.__name__, attr, expected)}: {why}")
        return out

    def __call__(self, name: str, obj: object) -> None:
        """Raise a ``PluginError`` listing every problem of ``obj``, in one line."""
        if problems := self.problems(name, obj):
            raise PluginError("; ".join(problems))


# -- the registry -------------------------------------------------------------------------------


def _origin_of(obj: object) -> str:
    """Where a directly registered entry comes from: bench itself, or a top-level package."""
    module = obj.partition(":")[0] if isinstance(obj, str) else getattr(obj, "__module__", "") or ""
    package = module.split(".")[0]
    return BUILT_IN if package in ("bench", "") else f"package {package}"


def _origin_of_entry_point(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f"distribution {dist.name} {dist.version}" if dist is not None else "an unnamed distribution"
    return f"{where} (entry point {ep.value})"


@dataclass
class _Entry:
    target: Any  # the object, or a lazy "module:attr" string
    origin: str
    #: Why the plugin cannot be used, and the error ``get`` raises for it.
    broken: str | None = None
    error: str | None = None


class Registry(Generic[T]):
    """Maps names to plugins of one kind.

    ``validate`` is called on every entry as it is resolved (a ``PluginKind``, or any callable
    raising ``TypeError``/``BenchError`` for an object that is not a valid plugin of this kind).
    """

    def __init__(
        self,
        kind: str,
        group: str | None = None,
        validate: Callable[[str, T], None] | None = None,
    ) -> None:
        self.kind = kind
        self.group = group
        self._validate = validate
        self._entries: dict[str, _Entry] = {}
        self._entry_points_loaded = group is None

    def register(self, name: str, obj: T | str | None = None) -> Callable[[T], T] | T | str:
        """Register ``obj`` under ``name``; without ``obj``, act as a class decorator."""
        if obj is None:
            def decorator(target: T) -> T:
                self.register(name, target)
                return target
            return decorator
        origin = _origin_of(obj)
        if name in self._entries:
            raise DuplicatePluginError(
                f"{self.kind} {name!r} is already registered by {self._entries[name].origin}; "
                f"{origin} registers it again"
            )
        if not isinstance(obj, str):
            self._check_here(name, obj)
        self._entries[name] = _Entry(obj, origin)
        return obj

    def _check_here(self, name: str, obj: Any) -> None:
        """``_check`` for an entry bench's own code registers: the error names the entry."""
        try:
            self._check(name, obj)
        except PluginError as exc:
            where = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', type(obj).__name__)}"
            raise PluginError(f"{self.kind} {name!r} ({where}) is not a valid {self.kind}: {exc}") from exc

    def _check(self, name: str, obj: Any) -> None:
        if self._validate is None:
            return
        try:
            self._validate(name, obj)
        except PluginError:
            raise
        except TypeError as exc:  # a kind's own validate function
            raise PluginError(str(exc)) from exc

    def _load_entry_points(self) -> None:
        """Load every entry point of the group; a failing one is recorded against its own name."""
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        by_name: dict[str, list[EntryPoint]] = {}
        for ep in entry_points(group=self.group):
            by_name.setdefault(ep.name, []).append(ep)
        for name, eps in by_name.items():
            origins = ([self._entries[name].origin] if name in self._entries else []) + [
                _origin_of_entry_point(ep) for ep in sorted(eps, key=_origin_of_entry_point)]
            if len(origins) > 1:  # neither wins: which one a run would use must not be a guess
                why = f"given twice, by {' and by '.join(origins)}; uninstall one"
                self._entries[name] = _Entry(None, " and ".join(origins), why, f"{self.kind} {name!r} is {why}")
                continue
            self._entries[name] = self._load(name, eps[0])

    def _load(self, name: str, ep: EntryPoint) -> _Entry:
        origin = _origin_of_entry_point(ep)
        try:
            obj = ep.load()
            self._check(name, obj)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin's failure is its own name's
            return _Entry(None, origin, broken=one_line(exc))
        return _Entry(obj, origin)

    def names(self) -> list[str]:
        """Every registered name, broken plugins' included (``broken()`` says which)."""
        self._load_entry_points()
        return sorted(self._entries)

    def broken(self) -> dict[str, str]:
        """Name to reason, for each plugin that is installed but cannot be used."""
        self._load_entry_points()
        return {name: e.broken for name, e in sorted(self._entries.items()) if e.broken is not None}

    def origin(self, name: str) -> str:
        """Where ``name`` comes from: ``bench (built-in)`` or a distribution and entry point."""
        self._load_entry_points()
        return self._entries[name].origin

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        """The plugin called ``name``; an ``UnknownNameError`` with near misses for a name no
        plugin has, a ``BrokenPluginError`` with the reason for one whose plugin is broken."""
        self._load_entry_points()
        if name not in self._entries:
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}.{did_you_mean(name, self.names())}"
                f" Known: {', '.join(self.names())}."
            )
        entry = self._entries[name]
        if entry.broken is not None:
            raise BrokenPluginError(
                entry.error or f"{self.kind} {name!r} from {entry.origin} cannot be used: {entry.broken}")
        if isinstance(entry.target, str):
            module, _, attr = entry.target.partition(":")
            obj = getattr(importlib.import_module(module), attr)
            self._check_here(name, obj)
            entry.target = obj
        return entry.target  # type: ignore[no-any-return]
