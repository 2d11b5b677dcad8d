"""``report.html``: one self-contained page per run, from the store and the run folder's files.

Nothing is recomputed: plots, ``leaderboard.csv`` and ``ranking.csv`` are rebuilt from the
store only when they are missing. Every plot is embedded as a base64 PNG; the page has no external references.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bench.report import RunRows, atomic_write_text, load_rows, write_leaderboard, write_plots, write_ranking

#: Leaderboards longer than this are shown in a (open) collapsible section.
LONG_TABLE = 40
PLOT_ORDER = ("rate_accuracy_", "rate_psnr_", "rate_ms_ssim_", "accuracy_psnr_", "visual_")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
 padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
.status{font-size:.7em;padding:.1em .5em;border-radius:.3em;background:#eee;vertical-align:middle}
.note{color:#555;font-size:.92em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right;vertical-align:top}
th{background:#f3f3f3}tbody tr:nth-child(even){background:#fafafa}
td.k{text-align:left;font-weight:600}td.v{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#444}
pre{background:#f6f6f6;padding:.7em;overflow-x:auto;font-size:.85em}
.scroll{overflow-x:auto}
"""

HOW_TO_READ = (
    "How to read: bpp is the mean of per-image bits per pixel, from the real bitstream bytes "
    "(or a neural codec's likelihood estimate where rate_source says 'estimate'); PSNR and MS-SSIM are "
    "means of per-image values. Scenarios: A = model on original images, B = the same model evaluated on "
    "compressed images, C = model finetuned on compressed images, D = compressed-domain model on the "
    "codec's latents."
)


def _when(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if t else "—"


def _fmt(x: Any) -> str:
    return f"{x:.4g}"


def _table(df: pd.DataFrame) -> str:
    """A pandas table, numbers to 4 significant digits, empty cells for missing values."""
    df = df.dropna(axis=1, how="all")
    body = df.to_html(index=False, border=0, na_rep="", float_format=_fmt, escape=True)
    return f'<div class="scroll">{body}</div>'


def _csv_section(path: Path, title: str) -> str:
    if not path.is_file():
        return ""
    df = pd.read_csv(path)
    table = _table(df)
    if len(df) > LONG_TABLE:
        table = f"<details open><summary>{len(df)} rows</summary>{table}</details>"
    return f"<h2>{escape(title)}</h2>\n<p class=\"note\">From <code>{escape(path.name)}</code>.</p>\n{table}"


def _plot_key(p: Path) -> tuple[int, str]:
    return next((i for i, pre in enumerate(PLOT_ORDER) if p.name.startswith(pre)), len(PLOT_ORDER)), p.name


def _caption(p: Path) -> str:
    stem = p.stem
    for pre, label in (("rate_accuracy_", "Rate–accuracy"), ("rate_psnr_", "Rate–PSNR"), ("rate_ms_ssim_", "Rate–MS-SSIM"),
                       ("accuracy_psnr_", "Accuracy–PSNR"), ("visual_", "Visual comparison")):
        if stem.startswith(pre):
            return f"{label}: {stem[len(pre):].replace('_', ' · ')}"
    return stem.replace("_", " ")


def _plots(pngs: list[Path]) -> str:
    figures = []
    for p in pngs:
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        cap = escape(_caption(p))
        figures.append(f'<figure><img src="data:image/png;base64,{data}" alt="{cap}">'
                       f"<figcaption>{cap} <span class=\"note\">({escape(p.name)})</span></figcaption></figure>")
    return "<h2>Plots</h2>\n" + ("\n".join(figures) or '<p class="note">No plots.</p>')


def _kv(d: dict[str, Any]) -> str:
    rows = []
    for k, v in d.items():
        text = v if isinstance(v, str) else json.dumps(v, indent=1 if isinstance(v, (dict, list)) else None)
        rows.append(f'<tr><td class="k">{escape(str(k))}</td><td class="v"><code>{escape(str(text))}</code></td></tr>')
    return f"<table>{''.join(rows)}</table>"


def _summary_file(folder: Path, run: dict[str, Any]) -> dict[str, Any] | None:
    """``summary.json``, when it is this run's (the last run that finished left it)."""
    path = folder / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else None
    return summary if isinstance(summary, dict) and summary.get("run_id") == run.get("run_id") else None


def render(folder: Path, loaded: RunRows | None = None) -> str:
    """The report page of ``folder``'s latest run (``loaded``: its rows, when read already), as HTML text."""
    loaded = loaded or load_rows(folder)  # raises BenchError naming the folder when there is no store
    run = loaded.run
    plots_dir = folder / "plots"
    pngs = sorted(plots_dir.glob("*.png"), key=_plot_key) if plots_dir.is_dir() else []
    if not pngs:
        write_plots(folder, loaded)
        pngs = sorted(plots_dir.glob("*.png"), key=_plot_key) if plots_dir.is_dir() else []
    if not (folder / "leaderboard.csv").is_file():
        write_leaderboard(folder, loaded)
    if not (folder / "ranking.csv").is_file():
        write_ranking(folder, loaded)
    summary = run.get("summary") or _summary_file(folder, run)
    name, status = str(run.get("name") or folder.name), str(run.get("status") or "unknown")

    parts = [
        f"<h1>{escape(name)} <span class=\"status\">{escape(status)}</span></h1>",
        f"<p class=\"note\">Run <code>{escape(str(run.get('run_id')))}</code>, started {_when(run.get('started'))}, "
        f"finished {_when(run.get('finished'))}; {len(run.get('cells') or [])} cells. "
        f"Folder <code>{escape(str(folder))}</code>.</p>",
        f"<p class=\"note\">{escape(HOW_TO_READ)}</p>",
        _plots(pngs),  # curves first: readers look at them before the tables
        _csv_section(folder / "ranking.csv", "Ranking (Bjøntegaard deltas against the anchor)"),
        _csv_section(folder / "leaderboard.csv", "Leaderboard"),
        _csv_section(folder / "costs.csv", "Costs (scenario D)"),
        "<h2>Settings (grid)</h2>\n<pre>" + escape(yaml.safe_dump(run.get("grid") or {}, sort_keys=False)) + "</pre>",
        "<h2>Provenance</h2>\n" + _kv(run.get("provenance") or {}),
        "<h2>Summary</h2>\n<pre>" + escape(json.dumps(summary, indent=2)) + "</pre>",
    ]
    body = "\n".join(p for p in parts if p)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(name)} — bench report</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_report(folder: Path, loaded: RunRows | None = None) -> Path:
    """Write ``folder/report.html`` (atomically) and return its path."""
    text = render(folder, loaded)
    path = folder / "report.html"
    atomic_write_text(path, text)
    return path
