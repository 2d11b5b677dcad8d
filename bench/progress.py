"""Progress bars with counts and ETA on a terminal; one line per stage otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm


class Progress:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.interactive = sys.stderr.isatty()

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def bar(self, total: int, desc: str, unit: str) -> Any:
        return _Bar(self, total, desc, unit)


class _Bar:
    """A tqdm bar on a terminal; otherwise a summary line when the stage ends."""

    def __init__(self, progress: Progress, total: int, desc: str, unit: str) -> None:
        self.progress, self.total, self.desc, self.unit = progress, total, desc, unit
        self.count, self.t0 = 0, time.perf_counter()
        self._tqdm = None
        if progress.interactive and not progress.quiet and total > 0:
            self._tqdm = tqdm(total=total, desc=desc, unit=f" {unit}", file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._tqdm is not None:
            self._tqdm.update(n)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.total > 0:
            self.progress.say(f"{self.desc}: {self.count}/{self.total} {self.unit} in {time.perf_counter() - self.t0:.1f} s")
