"""Errors that reach the user as one clean line (the CLI turns them into exit status 2)."""

from __future__ import annotations


class BenchError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class ConfigError(BenchError):
    """The grid file is invalid. Carries every problem found, one per line."""

    def __init__(self, problems: list[str], source: str = "grid") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


class UnknownNameError(BenchError, KeyError):
    """A name that no registry entry carries."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ImageError(BenchError):
    """An input image that cannot be read (empty, truncated, corrupt, unsupported)."""


class CodecError(BenchError):
    """A codec failed to encode or decode, or its programs are missing."""


class DatasetError(BenchError):
    """A dataset folder or annotation file that cannot be used."""


class PluginError(BenchError, TypeError):
    """A plugin that is not a valid plugin of its kind: not a subclass of the kind's base
    class, a required class attribute missing, a method that takes other parameters than the
    base class's, or a registered name that is not the class's ``name``."""


class DuplicatePluginError(BenchError, ValueError):
    """Two plugins of one kind under one name (each named by the distribution it comes from)."""


class BrokenPluginError(UnknownNameError):
    """A name whose installed plugin cannot be used (it fails to import, is invalid, or is
    given twice). An ``UnknownNameError``, so that a grid check reports it where it is used;
    every other name of the registry keeps working."""
