"""``bench report --markdown`` and ``scripts/readme_results.py``: the README's result tables
come from a run's store, and say which run."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from bench.config import parse_grid
from bench.errors import BenchError
from bench.grid import resolve
from bench.report import load_rows
from bench.report.leaderboard import leaderboard_frame
from bench.report.markdown import group_section, markdown_report
from bench.runner import RunOptions, run
from bench.store import Store
from tests.helpers import bench, tiny_grid

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench report --markdown: BEGIN -->", "<!-- bench report --markdown: END -->"
#: The grid's operating points, in its order (what the tables' rows must follow).
POINTS = [("jpeg", 5), ("jpeg", 80), ("hyperprior", 1), ("hyperprior", 3)]


def markdown_grid() -> dict[str, Any]:
    """Classification (A, B, C and two D variants) and segmentation (A, B, C, D) on 48×48
    scenes: two tables, D columns, a cost table, in about 20 s."""
    grid = tiny_grid(name="md")
    grid["codecs"] = [{"codec": "jpeg", "qualities": [5, 80]},
                      {"codec": "bmshj2018-hyperprior", "label": "hyperprior", "weights": "embedded",
                       "qualities": [1, 3]}]
    data = {"name": "shapes", "n_train": 96, "n_val": 32, "size": 48}  # 48 = 3 latent cells
    train = {"epochs": 4, "batch_size": 16, "lr": 0.01}  # segmentation: 12, for mIoU that moves with the codec
    domain = {"train": {"epochs": 1, "batch_size": 16, "lr": 0.01}, "qualities": [1]}
    cls = grid["experiments"][0]
    cls.update(dataset=data, model={"name": "tiny-resnet"}, scenarios=["A", "B", "C", "D"], train=train,
               compressed_domain={**domain, "variants": [{"arch": "aa"},
                                                         {"arch": "aa", "transfer": {"strides": [4, 8]}}]})
    grid["experiments"].append({"task": "segmentation", "dataset": data, "model": {"name": "tiny-fcn"},
                                "scenarios": ["A", "B", "C", "D"], "train": {**train, "epochs": 12},
                                "finetune": cls["finetune"],
                                "compressed_domain": domain})
    return grid


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("markdown") / "out"
    run(resolve(parse_grid(markdown_grid())), RunOptions(out=out, workers=1, quiet=True))
    return out / "md"


def cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def tables(md: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """Each table of the text with the paragraph before it: (paragraph, header, rows)."""
    out, before = [], ""
    for block in md.split("\n\n"):
        if block.startswith("| "):
            lines = block.splitlines()
            assert set(cells(lines[1])) == {"---"}
            out.append((before, cells(lines[0]), [cells(line) for line in lines[2:]]))
        else:
            before = block
    return out


def group_tables(md: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The operating-point table of each group, by the group's label."""
    found = {}
    for before, header, rows in tables(md):
        m = re.match(r"\*\*(.+?)\*\* \(", before)
        if m and header[0] == "codec":
            found[m.group(1)] = (header, rows)
    return found


def test_tables_hold_the_leaderboard_values(folder: Path) -> None:
    md = markdown_report(folder)
    lb = pd.read_csv(folder / "leaderboard.csv")
    found = group_tables(md)
    assert set(found) == {"classification · tiny-resnet · shapes · seed 0",
                          "segmentation · tiny-fcn · shapes · seed 0"}
    compared = 0
    for (task, primary, scenarios) in (("classification", "top1", ["B", "C", "D:aa", "D:aa+kt"]),
                                       ("segmentation", "mIoU", ["B", "C", "D:aa"])):
        header, rows = next(v for k, v in found.items() if k.startswith(task))
        assert header == ["codec", "quality", "bpp (mean per image)", "PSNR dB (mean per image)",
                          *[f"{primary} {s}" for s in scenarios], "recovered_share C (C−B)/(A−B)"]
        assert [(r[0], int(r[1])) for r in rows] == POINTS  # the grid's order
        m = lb[(lb.task == task) & (lb.metric == primary)]
        a = m[m.scenario == "A"].value.item()
        assert f"A (originals): {primary} **{a:.3f}**" in md
        for row in rows:
            at = m[(m.codec == row[0]) & (m.quality == int(row[1]))].set_index("scenario")
            assert row[2] == f"{at.loc['B', 'bpp']:.3f}" and row[3] == f"{at.loc['B', 'psnr']:.2f}"
            for s, text in zip(scenarios, row[4:-1]):
                if s in at.index:
                    assert text == f"{at.loc[s, 'value']:.3f}", (task, row[:2], s)
                    compared += 1
                else:
                    assert text == "—"
            b, c = at.loc["B", "value"], at.loc["C", "value"]
            assert row[-1] == (f"{(c - b) / (a - b):.3f}" if a - b > 1e-9 else "—")
        if task == "segmentation":  # values that differ from row to row: a row mix-up would show
            assert len({r[4] for r in rows} | {r[5] for r in rows}) > 2
    coded = lb[(lb.scenario != "A") & lb.metric.isin(["top1", "mIoU"])]
    assert compared == len(coded) == 4 * 2 + 2 + 4 * 2 + 1  # every coded cell of the primary metrics, once


def test_ranking_and_costs_are_the_csv_files(folder: Path) -> None:
    md = markdown_report(folder)
    ranking, costs = pd.read_csv(folder / "ranking.csv"), pd.read_csv(folder / "costs.csv", dtype=str)
    [(_, cost_header, cost_rows)] = [t for t in tables(md) if t[0].startswith("Scenario D's costs")]
    assert cost_header == list(costs.columns) and len(cost_rows) == len(costs) == 3
    numbers = pd.read_csv(folder / "costs.csv")
    for row, (_, want) in zip(cost_rows, numbers.iterrows()):
        for column, text in zip(cost_header, row):
            if isinstance(want[column], str):
                assert text == want[column]
            else:
                assert float(text) == pytest.approx(want[column], abs=0.006), column
    ranked = [t for t in tables(md) if t[0].startswith("Ranking on ")]
    assert [t[0].split()[2] for t in ranked] == ["top1", "mIoU"]
    for (_, header, rows), metric in zip(ranked, ["top1", "mIoU"]):
        want = ranking[ranking.metric == metric]
        assert [(r[0], r[2]) for r in rows] == list(zip(want.scenario, want.codec))
        share = header.index("recovered_share")
        assert [r[share] for r in rows] == ["—" if pd.isna(x) else f"{x:.3f}" for x in want.recovered_share]
    assert any(r[header.index("recovered_share")] != "—" for r in rows)  # a share to compare, not only dashes


def test_first_line_names_the_run(folder: Path) -> None:
    first = markdown_report(folder).splitlines()[0]
    _, last = load_rows(folder)
    prov = last["provenance"]
    assert prov["git_commit"] and f"commit `{prov['git_commit']}`" in first
    assert first.startswith(f"Run `md` (id `{last['run_id']}`, finished): started 20")
    assert f"wall time {last['summary']['wall_s']:.1f} s" in first and "finished 20" in first
    assert f"{prov['platform']}, {prov['cpu_count']} CPUs, device {prov['device']}" in first
    assert first.endswith(f"; {len(last['cells'])} cells.") and len(last["cells"]) == 21


def test_a_resumed_run_says_which_cells_it_reused(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(folder.parent, out)
    summary = run(resolve(parse_grid(markdown_grid())), RunOptions(out=out, workers=1, quiet=True))
    assert summary["cells_run"] == 0
    first = markdown_report(out / "md").splitlines()[0]
    assert f"(id `{summary['run_id']}`, finished)" in first
    assert first.endswith("; 21 cells, 21 of them computed by earlier runs into the same store.")


def test_cli_prints_the_same_text_and_writes_nothing(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def files() -> dict[str, tuple[int, int]]:
        return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in folder.rglob("*") if p.is_file()}

    before = files()
    capsys.readouterr()
    assert bench("report", folder, "--markdown") == 0
    out = capsys.readouterr().out
    assert out == markdown_report(folder) and out.endswith(" |\n")
    assert files() == before


def test_two_experiments_under_one_name_are_refused(folder: Path) -> None:
    rows, last = load_rows(folder)
    [b] = [r for r in rows if r["task"] == "segmentation" and r["scenario"] == "B" and r["quality"] == 5]
    frame = leaderboard_frame([*rows, {**b, "key": "another-experiment", "metrics": {"mIoU": 0.5}}])
    group = frame[frame.task == "segmentation"]
    with pytest.raises(BenchError, match=r"two cells of scenario B at the same operating point \('jpeg', 5, None\)"):
        group_section(("segmentation", "tiny-fcn", "shapes", 0), group, pd.DataFrame(columns=frame.columns),
                      last["grid"])


def readme_results() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "scripts" / "readme_results.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_results_round_trip(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script, md = readme_results(), markdown_report(folder)
    readme = tmp_path / "README.md"
    readme.write_text(f"# bench\n\nintro\n\n{BEGIN}\nhand-typed | 0.1 |\n{END}\n\nmiddle\n\n{BEGIN}\n{END}\ntail\n")
    args = [str(folder), "--readme", str(readme)]
    assert script.main([*args, "--check"]) == 1
    assert script.main(args) == 0
    text = readme.read_text()
    block = f"{BEGIN}\n\n{md}\n{END}"
    assert text == f"# bench\n\nintro\n\n{block}\n\nmiddle\n\n{block}\ntail\n"
    assert script.main([*args, "--check"]) == 0
    assert script.main(args) == 0 and readme.read_text() == text  # again: nothing changes

    bpp = group_tables(md)["segmentation · tiny-fcn · shapes · seed 0"][1][0][2]
    altered = text.replace(f"| {bpp} |", f"| {float(bpp) + 0.001:.3f} |", 1)
    assert altered != text
    readme.write_text(altered)
    capsys.readouterr()
    assert script.main([*args, "--check"]) == 1
    assert f"{readme}: the results block differs" in capsys.readouterr().err
    assert readme.read_text() == altered  # --check changes nothing
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_results.py"), *args, "--check"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1 and str(readme) in done.stderr


@pytest.mark.parametrize("text, message", [
    ("# bench\n\nno markers\n", f"no '{BEGIN}'"),
    (f"{BEGIN}\nold\n", f":1: '{BEGIN}' without its"),
    (f"a\n{BEGIN}\n{BEGIN}\n{END}\n", f":3: '{BEGIN}' where '{END}' was expected"),
    (f"{END}\n", f":1: '{END}' where '{BEGIN}' was expected"),
], ids=["no markers", "BEGIN alone", "nested", "END first"])
def test_readme_without_a_proper_block_is_an_error(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   text: str, message: str) -> None:
    readme = tmp_path / "NOTES.md"
    readme.write_text(text)
    capsys.readouterr()
    assert readme_results().main([str(folder), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert f"readme_results: error: {readme}" in err and message in err
    assert readme.read_text() == text


def test_a_folder_without_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench("report", tmp_path, "--markdown") == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"{tmp_path}: no results store" in captured.err
    Store(tmp_path / "results.sqlite").close()
    assert bench("report", tmp_path, "--markdown") == 2
    assert "holds no run" in capsys.readouterr().err
