"""The ranking: per task × model × dataset × scenario × metric, codecs ordered by their
Bjøntegaard delta against the grid's anchor codec, with the accuracy at each target
bitrate and the share of scenario B's drop that C and D recover.

Curves are a scenario's rows for one codec, in achieved bpp (the mean of per-image bpp,
from the real bitstreams); the deltas are ``bench.metrics.bd`` on log10 of that rate over
the overlapping range. A codec is compared with the anchor in the same scenario, or,
where the anchor has no curve there (scenario D of a traditional anchor), with the
anchor's B curve: the decode-then-infer pipeline it would replace. The fidelity rows
(``task`` = ``fidelity``) rank the codecs' B images by BD-rate on PSNR and MS-SSIM, and,
with ``analysis.per_item``, also give the deltas of each image's own curves, averaged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.fidelity import FIDELITY
from bench.metrics.bd import BDResult, bd_batch, bd_metric, bd_per_item, bd_rate
from bench.metrics.bootstrap import REPLICATES, interval, resampled, weighted_means
from bench.report.leaderboard import FLAG, FLOAT, INTEGER, TEXT, leaderboard_frame, metric_replicates, typed

KEYS = ["task", "model", "dataset", "seed", "scenario", "metric"]
COLUMNS = KEYS + ["rank", "codec", "anchor", "bd_rate", "bd_rate_ci_low", "bd_rate_ci_high", "significant",
                  "bd_metric", "bd_metric_ci_low", "bd_metric_ci_high", "overlap", "points", "monotonic",
                  "drop_from_A", "recovered_share", "warnings"]
#: With ``analysis.per_item``, the fidelity rows' deltas per image, averaged.
PER_IMAGE = ["bd_rate_per_image", "bd_metric_per_image", "per_image_items"]
#: Column types (the values at target rates, ``value@0.5bpp`` and the like, are floats).
DTYPES = {**{k: TEXT for k in KEYS}, "seed": INTEGER, "rank": INTEGER, "codec": TEXT, "anchor": TEXT,
          "points": INTEGER, "monotonic": FLAG, "significant": FLAG, "per_image_items": INTEGER, "warnings": TEXT}


def confidence_of(grid: dict[str, Any]) -> float:
    """The level of the run's bootstrap intervals (``analysis.confidence``; 0.95)."""
    return float((grid.get("analysis") or {}).get("confidence", 0.95))


def anchor_of(grid: dict[str, Any]) -> str | None:
    """The grid's anchor codec label: ``analysis.anchor``, else its first codec."""
    anchor = (grid.get("analysis") or {}).get("anchor")
    if anchor:
        return anchor
    codecs = grid.get("codecs") or []
    return (codecs[0].get("label") or codecs[0].get("codec")) if codecs else None


def reference_frames(grid: dict[str, Any]) -> dict[str, dict[str, pd.DataFrame]]:
    """The published curves a run's record holds (``Plan.record``), as B rows of their
    dataset, by dataset and label: ``rate_source`` ``published``."""
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for rec in grid.get("reference_curves") or []:
        ms_ssim = rec.get("ms_ssim") or [math.nan] * len(rec["bpp"])
        out.setdefault(rec["dataset"], {})[rec["label"]] = pd.DataFrame({
            "codec": rec["label"], "bpp": rec["bpp"], "psnr": rec["psnr"], "ms_ssim": ms_ssim,
            "quality": pd.array([None] * len(rec["bpp"]), dtype="Int64"), "target_bpp": math.nan,
            "rate_source": "published", "cell": None, "scenario": "B"})
    return out


def _curve(g: pd.DataFrame, y: str) -> tuple[np.ndarray, np.ndarray]:
    """The curve's points by rate; one point per rate (a target that resolved to a quality
    the grid also lists is the same stream twice)."""
    g = g[g.bpp.notna() & g[y].notna()].sort_values("bpp").drop_duplicates("bpp")
    return g.bpp.to_numpy(dtype=float), g[y].to_numpy(dtype=float)


def _deltas(anchor: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
            method: str) -> tuple[BDResult | None, BDResult | None, str]:
    if len(anchor[0]) < 2 or len(test[0]) < 2:
        return None, None, f"fewer than 2 points (anchor {len(anchor[0])}, codec {len(test[0])})"
    try:
        return bd_rate(*anchor, *test, method=method), bd_metric(*anchor, *test, method=method), ""
    except ValueError as exc:
        return None, None, str(exc)


def operating_point(r: Any) -> tuple[Any, ...]:
    """An operating point, matched across scenarios: codec and quality or target."""
    target = None if pd.isna(r.target_bpp) else float(r.target_bpp)
    return (r.codec, None if target is not None or pd.isna(r.quality) else int(r.quality), target)


def recovered_share(a: float, b: float, x: float) -> float | None:
    """The share of B's drop from A that X (scenario C or D at B's operating point) recovers,
    ``(X - B) / (A - B)``; None where B lost nothing."""
    return (x - b) / (a - b) if a - b > 1e-9 else None


def _recovery(group: pd.DataFrame, scenario: str, codec: str, reference: float | None) -> tuple[float, float]:
    """Mean drop from A of the codec's B points, and the mean share of it a C/D curve
    recovers, ``(X - B) / (A - B)``, over the operating points both have with a drop."""
    if reference is None:
        return math.nan, math.nan
    b = {operating_point(r): r.value for _, r in group[(group.scenario == "B") & (group.codec == codec)].iterrows()}
    drops = [reference - v for v in b.values()]
    if scenario == "B":
        return (float(np.mean(drops)) if drops else math.nan), math.nan
    shares = [share for _, r in group[(group.scenario == scenario) & (group.codec == codec)].iterrows()
              if (p := operating_point(r)) in b and (share := recovered_share(reference, b[p], r.value)) is not None]
    return (float(np.mean(drops)) if drops else math.nan), (float(np.mean(shares)) if shares else math.nan)


def _at_targets(g: pd.DataFrame) -> dict[str, float]:
    """The metric and the achieved bpp at each target bitrate of the curve."""
    out: dict[str, float] = {}
    for _, r in g[g.target_bpp.notna()].sort_values("target_bpp").iterrows():
        out[f"value@{r.target_bpp:g}bpp"] = r.value
        out[f"bpp@{r.target_bpp:g}bpp"] = r.bpp
    return out


def _image_curves(g: pd.DataFrame, images: dict[str, Any], y: str) -> list[tuple[list[float], list[float]]] | None:
    """Each image's own (bpp, metric) curve over the codec's operating points."""
    points = [images.get(cell) for cell in g.drop_duplicates("bpp").cell]
    if any(p is None or any(v is None for v in p[y]) for p in points):
        return None
    n = len(points[0]["bpp"]) if points else 0
    if not n or any(len(p["bpp"]) != n for p in points):
        return None
    curves = []
    for i in range(n):  # one point per rate: an image can sit at the same quality for two targets
        by_rate = dict(sorted((p["bpp"][i], p[y][i]) for p in points))
        curves.append((list(by_rate), list(by_rate.values())))
    return curves


def _per_image(anchor: pd.DataFrame, g: pd.DataFrame, images: dict[str, Any], y: str,
               method: str) -> dict[str, Any]:
    """BD-rate and BD-metric per image, averaged over the images (``analysis.per_item``)."""
    a, t = _image_curves(anchor, images, y), _image_curves(g, images, y)
    if a is None or t is None or len(a) != len(t):
        return {}
    def safe(delta: Any) -> Any:
        def run(*args: Any, **kw: Any) -> BDResult:
            try:
                return delta(*args, **kw)
            except ValueError as exc:  # an image whose points share a rate: no delta for it
                return BDResult(math.nan, 0.0, (str(exc),))
        return run

    rate, metric = bd_per_item(safe(bd_rate), a, t, method), bd_per_item(safe(bd_metric), a, t, method)
    used = sum(math.isfinite(safe(bd_rate)(*ai, *ti, method=method).value) for ai, ti in zip(a, t))
    return {"bd_rate_per_image": rate.value, "bd_metric_per_image": metric.value, "per_image_items": used,
            "_per_image_warnings": [f"per image: {w}" for w in rate.warnings]}


def _rate_sources(g: pd.DataFrame | None) -> set[str]:
    """Where a curve's rates come from; a published curve's are its bitstreams' too."""
    if g is None:
        return set()
    return {"bitstream" if v == "published" else v for v in g.rate_source.dropna()}


def _rank(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lowest BD-rate first (the anchor at 0); codecs without a delta last."""
    order = sorted(records, key=lambda r: (not math.isfinite(r["bd_rate"]), r["bd_rate"], r["codec"]))
    for i, r in enumerate(order, 1):
        r["rank"] = i if math.isfinite(r["bd_rate"]) else None
    return order


class Replicates:
    """The bootstrap replicates of a run's curves (``bench.metrics.bootstrap``): per
    operating point, its mean per-image bpp and its metric in each resampled val set —
    the same draws for every cell on one split, so two codecs' deltas are paired."""

    def __init__(self, rows: list[dict[str, Any]], confidence: float) -> None:
        self.rows = {r["key"]: r for r in rows}
        self.confidence = confidence
        self._memo: dict[tuple[str, str], np.ndarray | None] = {}

    def _per_image_means(self, cell: str, name: str) -> np.ndarray | None:
        values = ((self.rows[cell].get("record") or {}).get("per_image") or {}).get(name)
        if values is None:
            return None
        arr = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        return resampled(len(arr), lambda w: {name: weighted_means(arr, w)})[name]

    def of(self, cell: Any, name: str) -> np.ndarray | None:
        """``(REPLICATES,)`` values of ``name`` (bpp, psnr, ms_ssim or a task metric) at ``cell``."""
        if not isinstance(cell, str) or cell not in self.rows:
            return None
        if (cell, name) not in self._memo:
            row = self.rows[cell]
            if name in ("bpp", "psnr", "ms_ssim"):
                self._memo[(cell, name)] = self._per_image_means(cell, name)
            else:
                self._memo[(cell, name)] = metric_replicates(row, name)
        return self._memo[(cell, name)]

    def curve(self, g: pd.DataFrame, y: str, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The curve's points in every replicate, ``(B, k)`` rates and metrics; a published
        curve's points are the same in every replicate. None: a point has no replicates."""
        g = g[g.bpp.notna() & g[y].notna()].sort_values("bpp").drop_duplicates("bpp")
        rates, metrics = [], []
        for r in g.itertuples():
            if r.rate_source == "published":
                rates.append(np.full(REPLICATES, r.bpp))
                metrics.append(np.full(REPLICATES, getattr(r, y)))
                continue
            rate, value = self.of(r.cell, "bpp"), self.of(r.cell, metric if y == "value" else y)
            if rate is None or value is None:
                return None
            rates.append(rate)
            metrics.append(value)
        return (np.stack(rates, axis=1), np.stack(metrics, axis=1)) if rates else None

    def deltas(self, base: pd.DataFrame, g: pd.DataFrame, y: str, metric: str, method: str) -> dict[str, Any]:
        """The intervals of BD-rate and BD-metric, and whether BD-rate's excludes 0."""
        a, t = self.curve(base, y, metric), self.curve(g, y, metric)
        if a is None or t is None:
            return {}
        rate, value = bd_batch(*a, *t, method=method)
        out: dict[str, Any] = {}
        for name, values in (("bd_rate", rate), ("bd_metric", value)):
            finite = values[np.isfinite(values)]
            if len(finite) < MIN_DEFINED * len(values):
                return {"_interval_warning": f"{len(values) - len(finite)} of {len(values)} bootstrap replicates "
                                             "have no delta: no interval"}
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = interval(finite, self.confidence)
        out["significant"] = not (out["bd_rate_ci_low"] <= 0 <= out["bd_rate_ci_high"])
        return out


#: The share of a delta's bootstrap replicates that must be defined for it to get an interval.
MIN_DEFINED = 0.95


def _compare(curves: dict[str, pd.DataFrame], key: dict[str, Any], anchor: str, fallback: pd.DataFrame | None,
             y: str, method: str, extra: Any = None, replicates: Replicates | None = None) -> list[dict[str, Any]]:
    """One record per codec curve: its deltas against the anchor's curve, with their
    bootstrap intervals where the cells hold replicates."""
    base = curves.get(anchor)
    anchor_name = f"{anchor} {key['scenario']}"
    if base is None and fallback is not None:
        base, anchor_name = fallback, f"{anchor} B"
    records = []
    for codec, g in curves.items():
        test = _curve(g, y)
        rec = {**key, "codec": codec, "anchor": anchor_name, "points": len(test[0]), "bd_rate": math.nan,
               "bd_metric": math.nan, "overlap": math.nan, "monotonic": bool((np.diff(test[1]) > 0).all()),
               "warnings": ""}
        if base is None:
            rec["warnings"] = f"no {anchor} curve to compare with"
        elif base is g:
            if len(test[0]) >= 2:
                rec.update(bd_rate=0.0, bd_metric=0.0, overlap=1.0)
            else:
                rec["warnings"] = f"the anchor has fewer than 2 points ({len(test[0])})"
        else:
            rate, metric, why = _deltas(_curve(base, y), test, method)
            if rate is None or metric is None:
                rec["warnings"] = why
            else:
                notes = [f"{name}: {w}" if "overlap" in w else w
                         for name, d in (("BD-rate", rate), ("BD-metric", metric)) for w in d.warnings]
                rec.update(bd_rate=rate.value, bd_metric=metric.value, overlap=rate.overlap,
                           warnings="; ".join(dict.fromkeys(notes)))
                if replicates is not None:
                    ci = replicates.deltas(base, g, y, key["metric"], method)
                    if (note := ci.pop("_interval_warning", None)) is not None:
                        rec["warnings"] = "; ".join(filter(None, [rec["warnings"], note]))
                    rec.update(ci)
        sources = _rate_sources(base), _rate_sources(g) if base is not None else set()
        if base is not None and base is not g and sources[0] != sources[1]:
            rec["warnings"] = "; ".join(filter(None, [rec["warnings"], "the curves' rates come from different "
                                                      f"sources ({', '.join(sorted(sources[0] | sources[1]))})"]))
        if extra is not None:
            more = extra(codec, g)
            notes = more.pop("_per_image_warnings", [])
            rec.update(more)
            rec["warnings"] = "; ".join(filter(None, [rec["warnings"], *notes]))
        records.append(rec)
    return _rank(records)


def ranking_frame(rows: list[dict[str, Any]], grid: dict[str, Any]) -> pd.DataFrame:
    """The ranking table (long format: one row per codec and group, ``rank`` 1 best)."""
    confidence = confidence_of(grid)
    df = leaderboard_frame(rows, confidence)
    anchor = anchor_of(grid)
    method = (grid.get("analysis") or {}).get("interpolation", "pchip")
    replicates = Replicates(rows, confidence)
    if df.empty or anchor is None:
        return typed(pd.DataFrame(columns=COLUMNS), DTYPES, FLOAT)
    records: list[dict[str, Any]] = []
    tasks = df[df.task != FIDELITY]  # a fidelity experiment's rows are ranked with the fidelity below
    for (task, model, dataset, seed, metric), group in tasks.groupby(["task", "model", "dataset", "seed", "metric"],
                                                                     sort=False):
        a = group[group.scenario == "A"].value
        reference = float(a.iloc[0]) if len(a) and pd.notna(a.iloc[0]) else None
        coded = group[(group.scenario != "A") & group.value.notna()]
        b_anchor = coded[(coded.scenario == "B") & (coded.codec == anchor)]
        for scenario in dict.fromkeys(coded.scenario):
            sub = coded[coded.scenario == scenario]
            curves = {c: g for c, g in sub.groupby("codec")}

            def extra(codec: str, g: pd.DataFrame, scenario: str = scenario) -> dict[str, Any]:
                drop, share = _recovery(group, scenario, codec, reference)
                return {"drop_from_A": drop, "recovered_share": share, **_at_targets(g)}

            key = dict(task=task, model=model, dataset=dataset, seed=seed, scenario=scenario, metric=metric)
            records += _compare(curves, key, anchor, b_anchor if len(b_anchor) else None, "value", method, extra,
                                replicates)
    b = df[df.scenario == "B"].drop_duplicates(["dataset", "seed", "codec", "quality", "target_bpp"])
    per_item = bool((grid.get("analysis") or {}).get("per_item"))
    images = {r["key"]: r["record"].get("per_image") for r in rows}
    published = reference_frames(grid)
    for (dataset, seed), sub in b.groupby(["dataset", "seed"], sort=False):
        curves = {c: g for c, g in sub.groupby("codec")}
        curves.update(published.get(dataset, {}))
        for y in ("psnr", "ms_ssim"):
            key = dict(task="fidelity", model="", dataset=dataset, seed=seed, scenario="B", metric=y)

            def extra(codec: str, g: pd.DataFrame, y: str = y) -> dict[str, Any]:
                out = dict(_at_targets(g.assign(value=g[y])))
                if per_item and anchor in curves:
                    out.update(_per_image(curves[anchor], g, images, y, method))
                return out

            records += _compare(curves, key, anchor, None, y, method, extra, replicates)
    out = pd.DataFrame.from_records(records)
    targets = sorted({c for c in out.columns if "@" in c}, key=lambda c: (float(c.split("@")[1][:-3]), c[0] != "v"))
    first = [c for c in COLUMNS if c != "warnings"]
    out = out.reindex(columns=first + (PER_IMAGE if per_item else []) + targets + ["warnings"])
    return typed(out, DTYPES, FLOAT).reset_index(drop=True)
