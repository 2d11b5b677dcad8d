"""Each codec's rate–distortion curve of a run in CompressAI's results JSON layout.

One document per dataset and codec, from the run's B rows (the val images coded at each of
the codec's operating points; any experiment on the dataset, as they share the transcodes):
``bpp`` the mean of per-image bpp from the real bitstreams, ``psnr-rgb`` and ``ms-ssim-rgb``
means of per-image values, ``encoding_time`` and ``decoding_time`` mean seconds per image,
by rising bpp — what ``compressai.utils.bench`` writes, so ``compressai.utils.plot`` overlays
the curves with its published ones. ``quality`` adds the operating points' settings.
"""

from __future__ import annotations

from typing import Any

from bench import __version__
from bench.references import compressai_document


def _codec_entries(grid: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {(e.get("label") or e["codec"]): e for e in grid.get("codecs") or []}


def _description(label: str, entry: dict[str, Any] | None, dataset: str, n_images: int, sources: set[str]) -> str:
    if entry is not None:
        params = {k: v for k, v in entry.items() if k not in ("codec", "label", "qualities", "targets_bpp")}
        what = entry["codec"] + (f" {params}" if params else "")
    else:
        what = label
    rate = "likelihood estimates" if "estimate" in sources else "real bitstreams"
    return (f"bench {__version__}: {what} on {dataset} ({n_images} images); means of per-image values, "
            f"rate from the {rate}")


def compressai_curves(rows: list[dict[str, Any]], grid: dict[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(dataset, codec label): document}`` for every codec with B rows in ``rows``."""
    entries = _codec_entries(grid or {})
    points: dict[tuple[str, str], dict[Any, dict[str, Any]]] = {}
    info: dict[tuple[str, str], tuple[int, set[str]]] = {}
    for r in rows:
        if r["scenario"] != "B" or r["codec"] is None or r["bpp"] is None:
            continue
        key = (r["dataset"], r["codec"])
        setting = (r["quality"], r.get("target_bpp"))
        record = r.get("record") or {}
        points.setdefault(key, {})[setting] = {
            "bpp": r["bpp"], "psnr": r["psnr"], "ms_ssim": r["ms_ssim"], "quality": r["quality"],
            "encode_s": record.get("encode_s_mean"), "decode_s": record.get("decode_s_mean")}
        n, sources = info.get(key, (r["n_images"], set()))
        info[key] = (n, sources | {r.get("rate_source") or "bitstream"})
    out = {}
    for (dataset, codec), by_setting in points.items():
        n, sources = info[(dataset, codec)]
        out[(dataset, codec)] = compressai_document(
            codec, _description(codec, entries.get(codec), dataset, n, sources), list(by_setting.values()))
    return dict(sorted(out.items()))
