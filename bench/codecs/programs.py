"""What every codec that runs external programs shares: finding a program, naming its
version, running it, and reading what it wrote.

A program runs from an argument list, never through a shell; a failure is a one-line
``CodecError`` that ends with the program's last line of output.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from bench.errors import CodecError

#: Seconds one program run may take before it counts as hung.
TIMEOUT_S = 600


def find_program(explicit: str | None, env_var: str, default: str) -> str | None:
    """Absolute path of the program named by a parameter, an environment variable or PATH."""
    name = explicit or os.environ.get(env_var) or default
    return shutil.which(name)


def file_sha256(path: str | Path, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of a file's content."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:length]


@functools.lru_cache(maxsize=32)
def program_version(program: str | None, args: tuple[str, ...], pattern: str, label: str) -> str:
    """``<label>-<version>`` where running ``program args`` prints ``pattern``'s group 1;
    a hash of the binary if it prints none, so the name still changes with the program."""
    if program is None:
        return "unavailable"
    try:
        done = subprocess.run(
            [program, *args], capture_output=True, text=True, errors="replace", timeout=30, check=False
        )
        found = re.search(pattern, done.stdout + done.stderr)
        if found:
            return f"{label}-{found.group(1)}"
        return f"{label}-sha256:{file_sha256(program)}"
    except (OSError, subprocess.SubprocessError):
        return f"{label}-unknown"


def run_program(args: list[str], timeout_s: float = TIMEOUT_S, cwd: str | Path | None = None) -> None:
    """Run one program (an argument list, never a shell); a ``CodecError`` if it fails."""
    program = Path(args[0]).name
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, errors="replace", timeout=timeout_s, check=False, cwd=cwd
        )
    except subprocess.TimeoutExpired as exc:
        raise CodecError(f"{program} did not finish within {timeout_s:g} s") from exc
    except OSError as exc:
        raise CodecError(f"{program} could not be started ({exc})") from exc
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        raise CodecError(f"{program} exited {done.returncode}: {lines[-1]}")


def read_output(path: Path, program: str) -> bytes:
    """The bytes a program wrote to ``path``; a ``CodecError`` if it wrote none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    if not data:
        raise CodecError(f"{program} exited 0 but wrote no output")
    return data
