"""One generic registry for every kind of plugin (codecs, tasks, models, scenarios).

Entries are objects or lazy ``"module:attr"`` strings; third-party plugins come in through
entry points (``[project.entry-points."bench.codecs"]``) and are checked when they are
registered, not when they are first used.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from bench.errors import BenchError, UnknownNameError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    """`` Did you mean: jpeg?`` for the closest choices, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.7)
    return f" Did you mean: {', '.join(close)}?" if close else ""


class Registry(Generic[T]):
    """Maps names to plugins of one kind.

    ``validate`` is called on every entry as it is resolved; it raises ``TypeError`` for an
    object that is not a valid plugin of this kind.
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
        self._entries: dict[str, T | str] = {}
        self._entry_points_loaded = group is None

    def register(self, name: str, obj: T | str | None = None) -> Callable[[T], T] | T | str:
        """Register ``obj`` under ``name``; without ``obj``, act as a class decorator."""
        if obj is None:
            def decorator(target: T) -> T:
                self.register(name, target)
                return target
            return decorator
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if not isinstance(obj, str):
            self._check(name, obj)
        self._entries[name] = obj
        return obj

    def _check(self, name: str, obj: T) -> None:
        if self._validate is not None:
            self._validate(name, obj)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._entries:
                continue  # built-ins win; a plugin cannot silently replace one
            try:
                obj = ep.load()
                self._check(ep.name, obj)
            except Exception as exc:  # a broken plugin must not take the tool down silently
                raise BenchError(
                    f"plugin {ep.name!r} ({ep.value}) in entry-point group {self.group} "
                    f"is not a valid {self.kind}: {exc}"
                ) from exc
            self._entries[ep.name] = obj

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        """The plugin called ``name``; an ``UnknownNameError`` with near misses otherwise."""
        self._load_entry_points()
        if name not in self._entries:
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}.{did_you_mean(name, self.names())}"
                f" Known: {', '.join(self.names())}."
            )
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            obj = getattr(importlib.import_module(module), attr)
            self._check(name, obj)
            self._entries[name] = obj
            entry = obj
        return entry  # type: ignore[return-value]
