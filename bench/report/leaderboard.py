"""The leaderboard: one row per (cell, metric), rate and fidelity alongside."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.fidelity import FIDELITY
from bench.metrics.bootstrap import interval, resampled, weighted_means

COLUMNS = ["task", "model", "dataset", "scenario", "codec", "quality", "bpp", "bpp_total", "psnr",
           "ms_ssim", "metric", "value", "ci_low", "ci_high", "n_images", "seed", "rate_source", "target_bpp",
           "cell"]
#: Every column's type, whatever its values: a number column that happens to be empty (no
#: target bitrates in the grid) is still a float column in the Parquet file, and a text
#: column stays text with missing values (``rate_source`` of scenario A) as nulls.
TEXT, INTEGER, FLOAT, FLAG = "string", "Int64", "float64", "boolean"
DTYPES = {"task": TEXT, "model": TEXT, "dataset": TEXT, "scenario": TEXT, "codec": TEXT, "quality": INTEGER,
          "bpp": FLOAT, "bpp_total": FLOAT, "psnr": FLOAT, "ms_ssim": FLOAT, "metric": TEXT, "value": FLOAT,
          "ci_low": FLOAT, "ci_high": FLOAT, "n_images": INTEGER, "seed": INTEGER, "rate_source": TEXT, "target_bpp": FLOAT, "cell": TEXT}
SCENARIO_ORDER = {"A": 0, "B": 1, "C": 2, "D": 3}


def typed(frame: pd.DataFrame, dtypes: dict[str, str], default: str | None = None) -> pd.DataFrame:
    """``frame`` with each column cast to its type in ``dtypes`` (else ``default``, if given)."""
    wanted = {c: dtypes.get(c, default) for c in frame.columns}
    return frame.astype({c: t for c, t in wanted.items() if t is not None})


def metric_replicates(row: dict[str, Any], metric: str) -> np.ndarray | None:
    """A cell's bootstrap replicates of ``metric`` (``bench.metrics.bootstrap``): stored with
    the cell for a task's metrics; for PSNR and MS-SSIM (the fidelity rows' metrics, means
    over images) drawn from its per-image values with the same draws. None: not stored."""
    record = row.get("record") or {}
    stored = (record.get("bootstrap") or {}).get("metrics", {}).get(metric)
    if stored is not None:
        return np.array([np.nan if v is None else v for v in stored], dtype=np.float64)
    per_image = (record.get("per_image") or {}).get(metric)
    if row["task"] == FIDELITY and per_image is not None:
        values = np.array([np.nan if v is None else v for v in per_image], dtype=np.float64)
        return resampled(len(values), lambda w: {metric: weighted_means(values, w)})[metric]
    return None


def leaderboard_frame(rows: list[dict[str, Any]], confidence: float = 0.95) -> pd.DataFrame:
    """Long format. ``bpp`` is the mean of per-image bpp, ``bpp_total`` total bits over total
    pixels, ``psnr``/``ms_ssim`` means of per-image values; all from the val images' real
    bitstreams (``rate_source`` ``bitstream``), or from a neural codec's likelihood estimate
    where its ``entropy_estimation`` option asked for one (``rate_source`` ``estimate``).
    Scenario A rows have codec ``none`` and no rate. ``target_bpp`` is the target of a
    rate-controlled operating point (``bpp`` is still the achieved rate); its ``quality``
    is the one chosen for the set, or empty when every image has its own. ``ci_low`` and
    ``ci_high`` bound ``value``'s ``confidence`` bootstrap interval over the val images
    (percentile; empty where the cell has no replicates)."""
    records = []
    for r in rows:
        for metric, value in r["metrics"].items():
            low, high = interval(metric_replicates(r, metric), confidence)
            records.append({
                "ci_low": low, "ci_high": high,
                "task": r["task"], "model": r["model"], "dataset": r["dataset"], "scenario": r["scenario"],
                "codec": r["codec"] or "none", "quality": r["quality"], "bpp": r["bpp"],
                "bpp_total": r["bpp_total"], "rate_source": r.get("rate_source"), "psnr": r["psnr"], "ms_ssim": r["ms_ssim"], "metric": metric,
                "value": value, "n_images": r["n_images"], "seed": r["seed"], "target_bpp": r.get("target_bpp"),
                "cell": r["key"],
            })
    df = typed(pd.DataFrame.from_records(records, columns=COLUMNS), DTYPES)
    if df.empty:
        return df
    df["_s"] = df["scenario"].str[0].map(SCENARIO_ORDER).fillna(9)
    # metrics keep the order the task reports them in (its primary metric first)
    df["_m"] = df.groupby(["task", "model", "dataset"]).cumcount()
    df["_m"] = df.groupby(["task", "model", "dataset", "metric"])["_m"].transform("min")
    df = df.sort_values(["task", "model", "dataset", "_m", "_s", "codec", "bpp"], na_position="first")
    return df.drop(columns=["_s", "_m"]).reset_index(drop=True)


COST_COLUMNS = ["task", "model", "dataset", "codec", "quality", "bpp", "scenario", "params_decode_infer",
                "params_compressed", "gflops_decode_infer", "gflops_compressed", "ms_entropy_decode", "ms_synthesis",
                "ms_pixel_model", "ms_latent_model", "ms_decode_infer", "ms_compressed", "speedup",
                "speedup_without_entropy_decoding", "cost_images", "device"]


def cost_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Scenario D's cost table: per codec × operating point × model × compressed-domain
    model, parameters, GFLOPs per image and measured ms per image of decode-then-infer
    (full decode + pixel model) against compressed-domain inference (entropy decoding +
    latent model), on the run's device; ``speedup`` is their ratio, and
    ``speedup_without_entropy_decoding`` leaves out the entropy decoding both paths share."""
    records = [{"task": r["task"], "model": r["model"], "dataset": r["dataset"], "codec": r["codec"],
                "quality": r["quality"], "bpp": r["bpp"], "scenario": r["scenario"],
                "device": r["record"].get("device"), **r["record"]["cost"]}
               for r in rows if r.get("record", {}).get("cost")]
    df = pd.DataFrame.from_records(records, columns=COST_COLUMNS)
    return df.sort_values(["task", "model", "dataset", "codec", "quality", "scenario"]).reset_index(drop=True)
