"""A cell's row: what the store keeps of a finished cell, and its sample images."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.cache import Transcoded
from bench.metrics.bootstrap import Scores

if TYPE_CHECKING:
    from bench.datasets.base import ImageSet
    from bench.grid import Cell

#: Longest side of the stored sample images (a centre crop of larger images).
SAMPLE_SIDE = 256


def rate_control(cell: Cell, transcoded: Transcoded | None,
                 choice: dict[str, Any] | None) -> tuple[int | None, dict[str, Any] | None]:
    """The row's quality and what rate control did: the per-dataset ``choice`` (its search),
    or the per-image qualities' spread and how many images reached the target."""
    if cell.target is None:
        return cell.quality, None
    info: dict[str, Any] = {**cell.target.identity(), "tolerance": cell.target.tolerance}
    if cell.target.mode == "dataset":
        assert choice is not None
        choice = dict(choice)
        choice["within_tolerance"] = abs(choice["relative_error"]) <= cell.target.tolerance
        return int(choice["quality"]), {**info, "search": choice}
    if transcoded is not None and transcoded.qualities is not None:
        err = np.abs(transcoded.bpp - cell.target.bpp) / cell.target.bpp
        values, counts = np.unique(transcoded.qualities, return_counts=True)
        info.update({"qualities": {str(int(v)): int(c) for v, c in zip(values, counts)},
                     "images_within_tolerance": int((err <= cell.target.tolerance).sum()),
                     "mean_abs_relative_error": float(err.mean())})
    return None, info


def cell_row(cell: Cell, metrics: dict[str, float], transcoded: Transcoded | None, n_images: int, device: str,
             workers: int, choice: dict[str, Any] | None = None) -> dict[str, Any]:
    """The row of a cell: its metrics, the rate and fidelity of the val set it was tested on
    (mean of per-image values, and total bits over total pixels), and the record."""
    rate = transcoded.summary() if transcoded is not None else {}
    quality, control = rate_control(cell, transcoded, choice)
    row = {
        "key": cell.key, "task": cell.task, "model": cell.model, "dataset": cell.dataset,
        "scenario": cell.scenario_label, "codec": cell.codec_label, "quality": quality, "seed": cell.seed,
        "target_bpp": cell.target.bpp if cell.target is not None else None,
        "bpp": rate.get("bpp"), "bpp_total": rate.get("bpp_total"), "psnr": rate.get("psnr"),
        "ms_ssim": rate.get("ms_ssim"), "rate_source": rate.get("rate_source"), "n_images": n_images,
        "metrics": dict(metrics),
        "record": {"device": device, "workers": workers,
                   "encode_s_mean": rate.get("encode_s_mean"), "decode_s_mean": rate.get("decode_s_mean")},
    }
    if control is not None:
        row["record"]["rate_control"] = control
    if isinstance(metrics, Scores) and (replicates := metrics.record()) is not None:
        row["record"]["bootstrap"] = replicates  # the metrics' intervals (bench.metrics.bootstrap)
    if transcoded is not None:  # for per-image Bjøntegaard deltas (analysis.per_item)
        row["record"]["per_image"] = {
            "bpp": [round(float(v), 6) for v in transcoded.bpp], "psnr": [round(float(v), 4) for v in transcoded.psnr],
            "ms_ssim": [None if np.isnan(v) else round(float(v), 6) for v in transcoded.ms_ssim]}
    return row


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    h, w = image.shape[:2]
    top, left = max(0, (h - SAMPLE_SIDE) // 2), max(0, (w - SAMPLE_SIDE) // 2)
    buf = io.BytesIO()
    Image.fromarray(image[top : top + SAMPLE_SIDE, left : left + SAMPLE_SIDE]).save(buf, format="PNG")
    return buf.getvalue()


def sample(cell: Cell, originals: ImageSet, t: Transcoded) -> dict[str, Any]:
    """The first val image, original and decoded at the cell's operating point, for the
    visual grid; a centre crop, so the store stays small."""
    assert cell.codec_label is not None
    return {"cell": cell.key, "dataset": cell.dataset, "codec": cell.codec_label, "setting": str(cell.setting),
            "image_id": originals.ids[0], "original": _png(originals.images[0]), "png": _png(t.decoded[0]),
            "bpp": float(t.bpp[0]), "psnr": float(t.psnr[0]), "set_bpp": t.summary()["bpp"]}
