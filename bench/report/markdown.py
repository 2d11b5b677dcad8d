"""``bench report RUN --markdown``: a run's result tables as GitHub markdown, from its store alone.

The README's result tables are this text (``scripts/readme_results.py`` puts it between the
README's markers), so a number in them is always one the store holds, and the first line
names the run that produced them. The text depends on the store only: the same store gives
the same bytes, with codecs and operating points in the order the grid lists them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.fidelity import FIDELITY
from bench.report import load_rows
from bench.report.leaderboard import SCENARIO_ORDER, cost_frame, leaderboard_frame
from bench.report.ranking import operating_point, ranking_frame, recovered_share

MISSING = "—"
GROUP = ["task", "model", "dataset", "seed"]


def _fixed(x: Any, decimals: int) -> str:
    return MISSING if x is None or pd.isna(x) else f"{float(x):.{decimals}f}"


def _text(x: Any) -> str:
    """A table cell's text: pipes escaped, missing values as a dash."""
    return MISSING if x is None or (not isinstance(x, str) and pd.isna(x)) else str(x).replace("|", "\\|")


def _table(header: list[str], body: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *body]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _when(t: float | None) -> str | None:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if t else None


def run_line(run: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Which run the tables come from: grid, times, commit, machine, wall time and cells."""
    prov, summary = run.get("provenance") or {}, run.get("summary") or {}
    started, finished = _when(run.get("started")), _when(run.get("finished"))
    when = f"started {started}" + (f", finished {finished}" if finished else ", not finished")
    wall = summary.get("wall_s")
    wall_text = f"wall time {wall:.1f} s" if isinstance(wall, (int, float)) else "wall time not recorded"
    machine = f"{prov.get('platform') or 'platform unknown'}, {prov.get('cpu_count') or '?'} CPUs, " \
              f"device {prov.get('device') or 'unknown'}" + (f" ({prov['cuda']})" if prov.get("cuda") else "")
    earlier = sum(r.get("run_id") != run.get("run_id") for r in rows)
    cells = f"{len(run.get('cells') or [])} cells" + (
        f", {earlier} of them computed by earlier runs into the same store" if earlier else "")
    return (f"Run `{run.get('name')}` (id `{run.get('run_id')}`, {run.get('status')}): {when}, {wall_text}; "
            f"commit `{prov.get('git_commit') or 'unknown'}`; {machine}; {cells}.")


def _grid_points(grid: dict[str, Any]) -> dict[tuple[Any, ...], int]:
    """Each operating point's place in the grid: codecs in order, each one's qualities then targets."""
    order: dict[tuple[Any, ...], int] = {}
    for entry in grid.get("codecs") or []:
        label = entry.get("label") or entry["codec"]
        targets = entry.get("targets_bpp") if entry.get("targets_bpp") is not None else grid.get("targets_bpp")
        for q in entry.get("qualities") or []:
            order.setdefault((label, int(q), None), len(order))
        for t in targets or []:
            order.setdefault((label, None, float(t)), len(order))
    return order


def _groups(frame: pd.DataFrame, grid: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], pd.DataFrame]]:
    """The (task, model, dataset, seed) groups in the order of the grid's experiments."""
    place = {(e["task"], (e.get("model") or {}).get("name", ""), e["dataset"]["name"]): i
             for i, e in reversed(list(enumerate(grid.get("experiments") or [])))}
    groups = dict(list(frame.groupby(GROUP, sort=False)))
    for key in sorted(groups, key=lambda k: (place.get(k[:3], len(place)), *map(str, k))):
        yield key, groups[key]


def _check_one_per_point(group: pd.DataFrame, label: str) -> None:
    """The group's cells, refused when two differ at one (scenario, operating point): two
    experiments that share task, model and dataset names would be mixed in one table."""
    cells = group.drop_duplicates("cell")
    points = cells.apply(lambda r: (r.scenario, *operating_point(r)), axis=1)
    twice = points[points.duplicated()]
    if len(twice):
        raise BenchError(f"{label}: two cells of scenario {twice.iloc[0][0]} at the same operating point "
                         f"{twice.iloc[0][1:]}; the markdown tables need one experiment per task, model, dataset "
                         "and seed")


def _interval(low: Any, high: Any, decimals: int) -> str:
    """`` [low, high]``, the 95 % bootstrap interval; empty where there is none."""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f" [{_fixed(low, decimals)}, {_fixed(high, decimals)}]"


def _a_line(label: str, group: pd.DataFrame, metrics: list[str]) -> str:
    rows = group[group.scenario == "A"].set_index("metric")
    a = rows.value
    n = int(group.n_images.max())

    def shown(i: int, m: str) -> str:
        value = f"**{_fixed(a.get(m), 3)}**" if i == 0 else _fixed(a.get(m), 3)
        ci = _interval(rows.ci_low.get(m), rows.ci_high.get(m), 3) if m in rows.index else ""
        return f"{m} {value}{ci}"

    values = ", ".join(shown(i, m) for i, m in enumerate(metrics))
    return f"**{label}** ({n} val images). A (originals): {values}." if len(a) else \
        f"**{label}** ({n} val images). No scenario A in this run."


def _scenarios(group: pd.DataFrame) -> list[str]:
    coded = [s for s in dict.fromkeys(group.scenario) if s != "A"]
    return sorted(coded, key=lambda s: (SCENARIO_ORDER.get(s[0], 9), s))


def _point_row(point: tuple[Any, ...], cells: dict[str, pd.Series], scenarios: list[str],
               reference: float | None, targets: bool, share: bool) -> list[str]:
    """One operating point's row; its rate and PSNR are those of B's bitstreams, when B ran."""
    rate = next(cells[s] for s in ["B", "C", *scenarios] if s in cells)
    bpp = _fixed(rate.bpp, 3)
    values = []
    for s in scenarios:
        r = cells.get(s)
        own = "" if r is None or _fixed(r.bpp, 3) == bpp else f" (at {_fixed(r.bpp, 3)} bpp)"
        values.append(_fixed(None if r is None else r.value, 3) + own)
    row = [_text(point[0]), _text(rate.quality), *([_fixed(point[2], 3)] if targets else []), bpp,
           _fixed(rate.psnr, 2), *values]
    if share:
        b, c = cells.get("B"), cells.get("C")
        x = None if reference is None or b is None or c is None else recovered_share(reference, b.value, c.value)
        row.append(_fixed(x, 3))
    return row


def _points_table(group: pd.DataFrame, primary: str, grid: dict[str, Any]) -> str:
    """One row per operating point, in the grid's order: rate and fidelity of its val
    bitstreams, the primary metric in each scenario, and the share of B's drop that C recovers."""
    m = group[(group.metric == primary) & (group.scenario != "A")]
    a = group[(group.metric == primary) & (group.scenario == "A")].value
    reference = float(a.iloc[0]) if len(a) and pd.notna(a.iloc[0]) else None
    scenarios = _scenarios(m)
    by_point: dict[tuple[Any, ...], dict[str, pd.Series]] = {}
    for _, r in m.iterrows():
        by_point.setdefault(operating_point(r), {})[r.scenario] = r
    order = _grid_points(grid)
    points = sorted(by_point, key=lambda p: (order.get(p, len(order)), str(p)))
    targets = any(p[2] is not None for p in points)
    share = "B" in scenarios and "C" in scenarios
    header = ["codec", "quality", *(["target bpp"] if targets else []), "bpp (mean per image)",
              "PSNR dB (mean per image)", *[f"{primary} {s}" for s in scenarios],
              *(["recovered_share C (C−B)/(A−B)"] if share else [])]
    return _table(header, [_point_row(p, by_point[p], scenarios, reference, targets, share) for p in points])


def _ranking_table(ranking: pd.DataFrame, key: tuple[Any, ...], primary: str) -> str:
    r = ranking[(ranking[GROUP] == pd.Series(key, index=GROUP)).all(axis=1) & (ranking.metric == primary)]
    if r.empty:
        return ""
    header = ["scenario", "rank", "codec", "anchor", "BD-rate (%) [95 % CI]", "significant", f"BD-{primary}",
              "drop_from_A", "recovered_share", "warnings"]

    def significant(x: Any) -> str:
        return MISSING if pd.isna(x.significant) else ("yes" if x.significant else "no")

    body = [[_text(x.scenario), _text(x.rank), _text(x.codec), _text(x.anchor),
             _fixed(x.bd_rate, 1) + _interval(x.bd_rate_ci_low, x.bd_rate_ci_high, 1), significant(x),
             _fixed(x.bd_metric, 3), _fixed(x.drop_from_A, 3), _fixed(x.recovered_share, 3),
             _text(x.warnings) if x.warnings else ""] for x in r.itertuples()]
    return _table(header, body)


def fidelity_section(key: tuple[Any, ...], group: pd.DataFrame, ranking: pd.DataFrame, grid: dict[str, Any]) -> str:
    """A rate–distortion experiment: each operating point's rate, PSNR, MS-SSIM and coding
    times, then the ranking on PSNR (published reference curves among the codecs)."""
    _, _, dataset, seed = key
    label = f"rate–distortion · {dataset} · seed {seed}"
    _check_one_per_point(group, label)
    cells = group[group.metric == "psnr"]
    order = _grid_points(grid)
    body = []
    for _, r in sorted(cells.iterrows(), key=lambda kv: (order.get(operating_point(kv[1]), len(order)), kv[1].bpp)):
        body.append([_text(r.codec), _text(r.quality), _fixed(r.bpp, 4), _fixed(r.psnr, 2), _fixed(r.ms_ssim, 4)])
    parts = [f"**{label}** ({int(group.n_images.max())} images): bpp, PSNR and MS-SSIM are means of per-image "
             "values of the decoded images against the originals.",
             _table(["codec", "quality", "bpp (mean per image)", "PSNR dB (mean per image)",
                     "MS-SSIM (mean per image)"], body)]
    ranked = _ranking_table(ranking, key, "psnr")
    if ranked:
        method = (grid.get("analysis") or {}).get("interpolation", "pchip")
        parts.append(f"Ranking on PSNR (`ranking.csv`): BD-rate against the anchor's curve ({method} over log10 "
                     "of the mean per-image bpp, on the overlapping range; negative = less rate for the same "
                     "PSNR); published reference curves are ranked with the codecs.")
        parts.append(ranked)
    return "\n\n".join(parts)


def group_section(key: tuple[Any, ...], group: pd.DataFrame, ranking: pd.DataFrame, grid: dict[str, Any]) -> str:
    """One (task, model, dataset, seed): A's metrics, the operating points' table and the ranking."""
    task, model, dataset, seed = key
    if task == FIDELITY:
        return fidelity_section(key, group, ranking, grid)
    label = f"{task} · {model} · {dataset} · seed {seed}"
    _check_one_per_point(group, label)
    metrics = list(dict.fromkeys(group.metric))  # the task's order: its primary metric first
    primary = metrics[0]
    parts = [_a_line(label, group, metrics)]
    if (group.scenario != "A").any():
        parts.append(_points_table(group, primary, grid))
    ranked = _ranking_table(ranking, key, primary)
    if ranked:
        method = (grid.get("analysis") or {}).get("interpolation", "pchip")
        parts.append(f"Ranking on {primary} (`ranking.csv`): BD-rate against the anchor's curve ({method} over "
                     "log10 of the mean per-image bpp, on the overlapping range; negative = less rate for the "
                     f"same {primary}); drop_from_A and recovered_share are means over the codec's operating points.")
        parts.append(ranked)
    return "\n\n".join(parts)


#: The cost table's number columns and their decimals (``costs.csv``'s columns, in its order).
COST_DECIMALS = {"bpp": 3, "params_decode_infer": 0, "params_compressed": 0, "gflops_decode_infer": 3,
                 "gflops_compressed": 3, "speedup": 2, "speedup_without_entropy_decoding": 2, "cost_images": 0}


def cost_section(costs: pd.DataFrame) -> str:
    """``costs.csv`` as a table: ms to 2 decimals, GFLOPs 3, ratios 2."""
    header = list(costs.columns)
    body = [[_fixed(v, COST_DECIMALS.get(c, 2)) if c in COST_DECIMALS or c.startswith("ms_") else _text(v)
             for c, v in zip(header, row)] for row in costs.itertuples(index=False)]
    intro = ("Scenario D's costs (`costs.csv`): per image, over `cost_images` val bitstreams on the run's "
             "device, parameters, GFLOPs and measured ms of decode-then-infer (full decode + pixel model) "
             "against compressed-domain inference (entropy decoding + D model); `speedup` is their ratio of ms, "
             "`speedup_without_entropy_decoding` leaves out the entropy decoding both paths share.")
    return intro + "\n\n" + _table(header, body)


LEGEND = ("bpp is the mean of per-image bpp and PSNR the mean of per-image PSNR (RGB, 8-bit), both of the "
          "operating point's val bitstreams; a metric is computed over the whole val set. Scenarios: A the "
          "model on the originals, B the same model on the decoded images, C finetuned on compressed "
          "images, `D:<label>` a compressed-domain model on the codec's latents; a value followed by "
          "(at x bpp) was measured on bitstreams of its own rate. recovered_share C is (C − B) / (A − B) at "
          f"that operating point, {MISSING} where B lost nothing; {MISSING} also marks a cell not in the run. "
          "[low, high] is a 95 % bootstrap interval over the val images (paired across codecs and scenarios: "
          "they share the images); significant: BD-rate's interval excludes 0.")


def markdown_report(folder: Path) -> str:
    """The result tables of ``folder``'s latest run as GitHub markdown, from its store alone."""
    rows, run = load_rows(folder)
    frame = leaderboard_frame(rows)
    if frame.empty:
        raise BenchError(f"{folder / 'results.sqlite'}: its latest run has no finished cells")
    grid = run.get("grid") or {}
    ranking = ranking_frame(rows, grid)
    parts = [run_line(run, rows), LEGEND]
    parts += [group_section(key, group, ranking, grid) for key, group in _groups(frame, grid)]
    costs = cost_frame(rows)
    if not costs.empty:
        parts.append(cost_section(costs))
    return "\n\n".join(parts) + "\n"
