"""Print the table of bench/codecs/weights/README.md from the weights files themselves.

Each file's config records its training runs (``history``, oldest first, then the run
that wrote it) and the Kodak evaluation of the shipped weights.

    python scripts/weights_table.py
"""

from __future__ import annotations

from pathlib import Path

import torch

WEIGHTS = Path(__file__).resolve().parents[1] / "bench" / "codecs" / "weights"


def main() -> None:
    print("| file | family | λ | runs: steps (minutes each) | steps in all | Kodak bpp | Kodak PSNR (dB) | MB |")
    print("|---|---|---|---|---|---|---|---|")
    for path in sorted(WEIGHTS.glob("*.pt")):
        cfg = torch.load(path, map_location="cpu", weights_only=True)["config"]
        runs = [*cfg.get("history", []), cfg]
        parts = ", ".join(f"{r['steps']} ({r.get('minutes') or '-'})" for r in runs)
        ev = cfg.get("evaluation") or {}
        print(f"| `{path.name}` | {cfg['family']} | {cfg['lambda']} | {parts} | {sum(r['steps'] for r in runs)} "
              f"| {ev.get('bpp', float('nan')):.3f} | {ev.get('psnr', float('nan')):.2f} | {path.stat().st_size / 1e6:.2f} |")


if __name__ == "__main__":
    main()
