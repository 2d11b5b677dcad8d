"""The results store: one SQLite file per run folder, one row per finished cell.

A cell row is written in a single transaction once the cell is complete, so an
interrupted run keeps every finished cell and never holds a partial one.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, name TEXT NOT NULL, started REAL NOT NULL, finished REAL,
    status TEXT NOT NULL, grid TEXT NOT NULL, cells TEXT NOT NULL, provenance TEXT NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, run_id TEXT NOT NULL, task TEXT NOT NULL, model TEXT NOT NULL,
    dataset TEXT NOT NULL, scenario TEXT NOT NULL, codec TEXT, quality INTEGER, seed INTEGER NOT NULL,
    bpp REAL, bpp_total REAL, psnr REAL, ms_ssim REAL, rate_source TEXT, n_images INTEGER NOT NULL,
    metrics TEXT NOT NULL, record TEXT NOT NULL, created REAL NOT NULL, target_bpp REAL
);
-- per B cell, its first val image, original and decoded (PNG): the visual grid is drawn
-- from these alone
CREATE TABLE IF NOT EXISTS samples (
    cell TEXT PRIMARY KEY, dataset TEXT NOT NULL, codec TEXT NOT NULL, setting TEXT NOT NULL,
    image_id TEXT NOT NULL, original BLOB NOT NULL, png BLOB NOT NULL, bpp REAL, psnr REAL, set_bpp REAL
);
"""

CELL_COLUMNS = (
    "key", "run_id", "task", "model", "dataset", "scenario", "codec", "quality", "seed",
    "bpp", "bpp_total", "psnr", "ms_ssim", "rate_source", "n_images", "metrics", "record", "created",
    "target_bpp",
)


def _num(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        columns = {name for _, name, *_ in self.db.execute("PRAGMA table_info(cells)")}
        if "rate_source" not in columns:  # a store written before rates could be estimates
            with self.db:
                self.db.execute("ALTER TABLE cells ADD COLUMN rate_source TEXT")
        if "target_bpp" not in columns:  # a store written before target bitrates
            with self.db:
                self.db.execute("ALTER TABLE cells ADD COLUMN target_bpp REAL")

    def close(self) -> None:
        self.db.close()

    def finished_keys(self) -> set[str]:
        return {k for (k,) in self.db.execute("SELECT key FROM cells")}

    def begin_run(self, run_id: str, name: str, grid: dict[str, Any], cells: list[str], provenance: dict[str, Any]) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO runs (run_id, name, started, status, grid, cells, provenance) VALUES (?,?,?,?,?,?,?)",
                (run_id, name, time.time(), "running", json.dumps(grid), json.dumps(cells), json.dumps(provenance)),
            )

    def end_run(self, run_id: str, status: str, summary: dict[str, Any] | None) -> None:
        with self.db:
            self.db.execute(
                "UPDATE runs SET finished=?, status=?, summary=? WHERE run_id=?",
                (time.time(), status, json.dumps(summary) if summary is not None else None, run_id),
            )

    def record(self, row: dict[str, Any]) -> None:
        values = [row.get(c) for c in CELL_COLUMNS]
        values = [json.dumps(v) if c in ("metrics", "record") else _num(v) for c, v in zip(CELL_COLUMNS, values)]
        with self.db:
            self.db.execute(
                f"INSERT OR REPLACE INTO cells ({', '.join(CELL_COLUMNS)}) VALUES ({', '.join('?' * len(CELL_COLUMNS))})",
                values,
            )

    SAMPLE_KEYS = ("cell", "dataset", "codec", "setting", "image_id", "original", "png", "bpp", "psnr", "set_bpp")

    def put_sample(self, cell: str, dataset: str, codec: str, setting: str, image_id: str, original: bytes,
                   png: bytes, bpp: float, psnr: float, set_bpp: float) -> None:
        """A cell's sample image, original and decoded (PNG); ``bpp`` and ``psnr`` are the
        image's own, ``set_bpp`` the mean over its set (what the curves show)."""
        with self.db:
            self.db.execute(f"INSERT OR REPLACE INTO samples VALUES ({','.join('?' * len(self.SAMPLE_KEYS))})",
                            (cell, dataset, codec, setting, image_id, original, png, _num(bpp), _num(psnr),
                             _num(set_bpp)))

    def samples(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The samples of the cells ``keys`` (all when None)."""
        rows = [dict(zip(self.SAMPLE_KEYS, r))
                for r in self.db.execute(f"SELECT {', '.join(self.SAMPLE_KEYS)} FROM samples")]
        wanted = set(keys) if keys is not None else None
        return [r for r in rows if wanted is None or r["cell"] in wanted]

    def last_run(self) -> dict[str, Any] | None:
        cur = self.db.execute(
            "SELECT run_id, name, started, finished, status, grid, cells, provenance, summary "
            "FROM runs ORDER BY started DESC LIMIT 1"
        )
        row = cur.fetchone()
        if row is None:
            return None
        keys = ("run_id", "name", "started", "finished", "status", "grid", "cells", "provenance", "summary")
        out = dict(zip(keys, row))
        for k in ("grid", "cells", "provenance", "summary"):
            out[k] = json.loads(out[k]) if out[k] is not None else None
        return out

    def cells(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        cur = self.db.execute(f"SELECT {', '.join(CELL_COLUMNS)} FROM cells")
        rows = [dict(zip(CELL_COLUMNS, r)) for r in cur.fetchall()]
        if keys is not None:
            wanted = set(keys)
            rows = [r for r in rows if r["key"] in wanted]
        for r in rows:
            r["metrics"] = json.loads(r["metrics"])
            r["record"] = json.loads(r["record"])
        return rows
