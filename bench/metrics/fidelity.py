"""Fidelity of an 8-bit reconstruction: PSNR and MS-SSIM on RGB, peak 255."""

from __future__ import annotations

import math

import numpy as np

#: pytorch-msssim's 5-scale MS-SSIM with an 11-tap window needs a side above this.
MS_SSIM_MIN_SIDE = 161


def psnr(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels; ``inf`` for an exact reconstruction."""
    if original.shape != reconstruction.shape:
        raise ValueError(f"shape mismatch: {original.shape} vs {reconstruction.shape}")
    mse = np.mean((original.astype(np.float64) - reconstruction.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ms_ssim(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """MS-SSIM (pytorch-msssim, 5 scales, data range 255) on RGB.

    Undefined for images whose shorter side is below ``MS_SSIM_MIN_SIDE``: returns NaN
    there rather than a number from a truncated pyramid.
    """
    if original.shape != reconstruction.shape:
        raise ValueError(f"shape mismatch: {original.shape} vs {reconstruction.shape}")
    if min(original.shape[:2]) < MS_SSIM_MIN_SIDE:
        return math.nan
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    # float32 is ample for 8-bit data and an order of magnitude faster than float64
    a = torch.tensor(original, dtype=torch.float32).permute(2, 0, 1)[None]
    b = torch.tensor(reconstruction, dtype=torch.float32).permute(2, 0, 1)[None]
    with torch.no_grad():
        return float(_ms_ssim(a, b, data_range=255.0, size_average=True))
