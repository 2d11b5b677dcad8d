"""Rate–accuracy, rate–PSNR, rate–MS-SSIM and accuracy–PSNR plots and the visual grid
(matplotlib, PNG and SVG).

Rate–accuracy follows the reference study's Figure 3: scenario A as a horizontal line,
B dashed, C solid, D (compressed-domain models, one curve per variant) dotted with other
markers, one colour per codec; x is the mean of per-image bpp. A curve whose
rate is a likelihood estimate (a neural codec's ``entropy_estimation``) says so in its
legend entry and has hollow markers.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.fidelity import FIDELITY as FIDELITY_TASK  # noqa: E402
from bench.report.leaderboard import leaderboard_frame  # noqa: E402

STYLE = {"B": "--", "C": "-", "D": ":"}
#: Scenario D's variants are told apart by marker (all dotted, in their codec's colour).
D_MARKERS = ("s", "^", "D", "v", "P", "X", "*")


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts)).strip("-")


def _colours(codecs: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {c: cmap(i % 10) for i, c in enumerate(sorted(codecs))}


def _rate_style(g: pd.DataFrame) -> tuple[str, dict[str, Any]]:
    """Legend suffix and marker style for a curve: estimated rates are marked as such."""
    if (g.rate_source == "estimate").any():
        return " (estimated rate)", {"mfc": "none"}
    return "", {}


def _save(fig: Any, path: Path) -> Path:
    """``path`` (PNG) and the same figure as SVG beside it, each written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for target in (path, path.with_suffix(".svg")):
        tmp = target.with_name(f".{target.stem}.tmp{target.suffix}")
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        tmp.replace(target)
    plt.close(fig)
    return path


def _task_metrics(sub: pd.DataFrame) -> list[str]:
    """The task's metrics in its own order (the primary one first), less those undefined
    everywhere (COCO's APl on 64×64 images), which get no panel."""
    return [m for m in dict.fromkeys(sub.metric) if sub[sub.metric == m].value.notna().any()]


def _band(ax: Any, g: pd.DataFrame, x: str, colour: Any) -> None:
    """The curve's bootstrap interval (``ci_low`` .. ``ci_high``) as a shaded band."""
    g = g[g.ci_low.notna() & g.ci_high.notna()]
    if len(g):
        ax.fill_between(g[x].to_numpy(float), g.ci_low.to_numpy(float), g.ci_high.to_numpy(float),
                        color=colour, alpha=0.15, lw=0)


def _scenario_panel(ax: Any, m: pd.DataFrame, x: str, colours: dict[str, Any], title: str) -> None:
    """One metric against ``x`` (bpp or psnr): A a horizontal line, one curve per scenario
    and codec, styled by scenario (D variants told apart by marker), each with its
    bootstrap interval as a band."""
    for _, a in m[m.scenario == "A"].iterrows():
        ax.axhline(a.value, color="black", lw=1.2, label="A (original)")
        if pd.notna(a.ci_low) and pd.notna(a.ci_high):
            ax.axhspan(a.ci_low, a.ci_high, color="black", alpha=0.08, lw=0)
    variants = sorted(v for v in m.scenario.unique() if v.startswith("D"))
    markers = {v: D_MARKERS[i % len(D_MARKERS)] for i, v in enumerate(variants)}
    for (scenario, codec), g in m[(m.scenario != "A") & m[x].notna()].groupby(["scenario", "codec"]):
        g = g.sort_values(x)
        suffix, style = _rate_style(g) if x == "bpp" else ("", {})
        ax.plot(g[x], g.value, STYLE.get(scenario[0], "-."), marker=markers.get(scenario, "o"), ms=4,
                color=colours[codec], label=f"{codec} {scenario}{suffix}", **style)
        _band(ax, g, x, colours[codec])
    ax.set_xlabel("bpp (mean of per-image bpp)" if x == "bpp" else "PSNR (dB, mean of per-image PSNR)")
    ax.set_ylabel(m.metric.iloc[0])
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def rate_accuracy(df: pd.DataFrame, task: str, model: str, dataset: str, out: Path) -> Path:
    sub = df[(df.task == task) & (df.model == model) & (df.dataset == dataset)]
    metrics = _task_metrics(sub)
    colours = _colours([c for c in sub.codec.unique() if c != "none"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        _scenario_panel(ax, sub[sub.metric == metric], "bpp", colours, f"{task} · {model} · {dataset}")
    return _save(fig, out / f"rate_accuracy_{_slug(task, model, dataset)}.png")


FIDELITY = {"psnr": ("PSNR", "PSNR (dB, mean of per-image PSNR)"),
            "ms_ssim": ("MS-SSIM", "MS-SSIM (mean of per-image MS-SSIM)")}


def rate_fidelity(df: pd.DataFrame, dataset: str, out: Path, y: str = "psnr",
                  published: dict[str, pd.DataFrame] | None = None) -> Path | None:
    """Rate–PSNR or rate–MS-SSIM of the codecs' B images (None where the metric is
    undefined everywhere: MS-SSIM on images under 161 pixels), with the ``published``
    reference curves of the dataset (by label) drawn dotted, without markers of their own."""
    sub = df[(df.dataset == dataset) & (df.scenario == "B") & df[y].notna()]
    sub = sub.drop_duplicates(["codec", "quality", "target_bpp"])
    if sub.empty:
        return None
    name, axis = FIDELITY[y]
    refs = {label: g for label, g in (published or {}).items() if g[y].notna().any()}
    colours = _colours(list(sub.codec.unique()) + list(refs))
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for codec, g in sub.groupby("codec"):
        g = g.sort_values("bpp")
        suffix, style = _rate_style(g)
        ax.plot(g.bpp, g[y], marker="o", ms=4, color=colours[codec], label=f"{codec}{suffix}", **style)
    own = df[(df.dataset == dataset) & (df.task == FIDELITY_TASK) & (df.metric == y)]
    for codec, g in own.groupby("codec"):  # a fidelity experiment's rows carry the intervals
        _band(ax, g.sort_values("bpp"), "bpp", colours[codec])
    for label, g in refs.items():
        ax.plot(g.bpp, g[y], marker="x", ms=4, ls=":", color=colours[label], label=f"{label} (published)")
    ax.set_xlabel("bpp (mean of per-image bpp)")
    ax.set_ylabel(axis)
    ax.set_title(f"rate–{name} · {dataset}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / f"rate_{y}_{_slug(dataset)}.png")


def accuracy_psnr(df: pd.DataFrame, task: str, model: str, dataset: str, out: Path) -> Path | None:
    """The task's primary metric against PSNR (Deng & Karam 2021, Figure 3): how much pixel
    fidelity a task needs, per codec and scenario; A as a horizontal line."""
    sub = df[(df.task == task) & (df.model == model) & (df.dataset == dataset)]
    metrics = _task_metrics(sub)
    if not metrics or sub[sub.metric == metrics[0]].psnr.isna().all():
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    colours = _colours([c for c in sub.codec.unique() if c != "none"])
    _scenario_panel(ax, sub[sub.metric == metrics[0]], "psnr", colours, f"{task} · {model} · {dataset}")
    return _save(fig, out / f"accuracy_psnr_{_slug(task, model, dataset)}.png")


def _three(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lowest, a middle and the highest rate of a codec's samples (by set bpp)."""
    points = sorted(points, key=lambda p: p["set_bpp"] if p["set_bpp"] is not None else math.inf)
    if len(points) <= 3:
        return points
    return [points[0], points[len(points) // 2], points[-1]]


def visual_grid(samples: list[dict[str, Any]], dataset: str, out: Path) -> Path | None:
    """One image at three rates per codec (the reference study's Figure 2): the original,
    then each codec's lowest, middle and highest operating point; each tile's caption is
    that image's own bpp and PSNR (the set's mean bpp in brackets)."""
    import io

    from PIL import Image

    here = [s for s in samples if s["dataset"] == dataset]
    codecs = sorted({s["codec"] for s in here})
    if not codecs:
        return None
    # one image per dataset: the originals of its samples (one val set) are the same
    original = {**here[0], "png": here[0]["original"]}
    here = list({(s["codec"], s["setting"]): s for s in here}.values())  # B of two experiments: once
    rows = {c: _three([s for s in here if s["codec"] == c]) for c in codecs}
    cols = 1 + max(len(r) for r in rows.values())
    fig, axes = plt.subplots(len(codecs), cols, figsize=(2.3 * cols, 2.5 * len(codecs)), squeeze=False)
    for i, codec in enumerate(codecs):
        tiles = [(original, "original")] + [
            (s, f"{codec} @ {s['setting']}\n{s['bpp']:.3f} bpp, {s['psnr']:.1f} dB\n(set: {s['set_bpp']:.3f} bpp)")
            for s in rows[codec]]
        for j, ax in enumerate(axes[i]):
            ax.axis("off")
            if j < len(tiles):
                sample, caption = tiles[j]
                ax.imshow(np.asarray(Image.open(io.BytesIO(sample["png"]))), interpolation="nearest")
                ax.set_title(caption, fontsize=7)
    fig.suptitle(f"{dataset}: val image {original['image_id']} at three rates per codec", fontsize=9)
    return _save(fig, out / f"visual_{_slug(dataset)}.png")


def plot_all(rows: list[dict[str, Any]], out: Path, samples: list[dict[str, Any]] | None = None,
             grid: dict[str, Any] | None = None) -> list[Path]:
    """Every plot of a run's rows; ``grid`` is the run's record of its grid (its published curves)."""
    from bench.report.ranking import reference_frames

    df = leaderboard_frame(rows)
    if df.empty:
        return []
    published = reference_frames(grid or {})
    tasks = df[df.task != FIDELITY_TASK][["task", "model", "dataset"]].drop_duplicates()
    paths = [rate_accuracy(df, *key, out) for key in tasks.itertuples(index=False)]
    paths += [p for d in df[df.scenario == "B"].dataset.unique() for y in FIDELITY
              if (p := rate_fidelity(df, d, out, y, published.get(d))) is not None]
    paths += [p for key in tasks.itertuples(index=False) if (p := accuracy_psnr(df, *key, out)) is not None]
    paths += [p for d in dict.fromkeys(s["dataset"] for s in samples or [])
              if (p := visual_grid(samples or [], d, out)) is not None]
    return paths
