"""How close a run's target bitrates came: one line per codec and target, from the store.

For each B row at a target (``targets_bpp`` in the grid): the quality chosen (per-dataset
rate control) or the spread of per-image qualities, the achieved bpp (mean of per-image bpp,
real bytes of the streams the cells were evaluated on), its error against the target, and
whether it is within the grid's tolerance. Then, per codec, the mean absolute error over
its targets.

    python benchmarks/target_table.py results/kodak-targets
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.report import load_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="run folder (OUT/NAME) of a grid with targets_bpp")
    args = p.parse_args()
    rows, last = load_rows(args.run)
    control = last["grid"]["rate_control"]
    rows = sorted((r for r in rows if r["scenario"] == "B" and r.get("target_bpp")),
                  key=lambda r: (r["dataset"], r["codec"], r["target_bpp"]))
    print(f"run {last['name']} ({last['status']}): rate control per {control['mode']}, tolerance "
          f"{control['tolerance']:.0%}; bpp = mean of per-image bpp from the real bytes\n")
    print("| dataset | codec | target bpp | quality | achieved bpp | error | within tolerance | images within |")
    print("|---|---|---:|---|---:|---:|---|---:|")
    errors: dict[str, list[float]] = {}
    for r in rows:
        rc = r["record"]["rate_control"]
        err = (r["bpp"] - r["target_bpp"]) / r["target_bpp"]
        errors.setdefault(r["codec"], []).append(abs(err))
        if rc["mode"] == "dataset":
            quality, within, images = str(r["quality"]), rc["search"]["within_tolerance"], "—"
        else:
            qs = sorted(int(q) for q in rc["qualities"])
            quality = f"{qs[0]}–{qs[-1]}" if len(qs) > 1 else str(qs[0])
            within = abs(err) <= rc["tolerance"]
            images = f"{rc['images_within_tolerance']}/{r['n_images']}"
        print(f"| {r['dataset']} | {r['codec']} | {r['target_bpp']:g} | {quality} | {r['bpp']:.4f} | "
              f"{err:+.1%} | {'yes' if within else 'no'} | {images} |")
    print()
    for codec, errs in errors.items():
        print(f"{codec}: mean |error| over {len(errs)} targets {np.mean(errs):.1%}; "
              f"{sum(e <= control['tolerance'] for e in errs)}/{len(errs)} targets within {control['tolerance']:.0%}")


if __name__ == "__main__":
    main()
