"""A Gaussian-mixture hyperprior image codec ("GMM"), a CompressAI ``CompressionModel``.

The entropy model is Cheng et al. 2020's ("Learned Image Compression with Discretized
Gaussian Mixture Likelihoods and Attention Modules"): each latent element ``y`` is coded
with a discretized mixture of K = 3 Gaussians,

    p(ŷ) = Σ_k w_k · [Φ((ŷ + ½ − μ_k) / σ_k) − Φ((ŷ − ½ − μ_k) / σ_k)],   Σ_k w_k = 1.

Where it differs from Cheng 2020:

* **No autoregressive context model.** The mixture parameters come from the hyperprior
  alone (the hyper-synthesis outputs, per latent channel, K weight logits → softmax, K
  means, K scales). Coding is therefore one parallel pass, not a raster scan; the price
  is some rate (Cheng's context model is worth roughly 5–10 % at equal quality).
* **No attention modules, GDN instead of residual blocks.** The transforms are those of
  Ballé/Minnen's mean-scale hyperprior (CompressAI's ``MeanScaleHyperprior``), so this
  model is that one with its Gaussian swapped for a mixture: the hyper-synthesis is
  ``MeanScaleHyperprior.h_s`` followed by a LeakyReLU and a 1×1 convolution to 3·K·M
  channels.
* **Quantisation.** ŷ = round(y) (integers, as in CompressAI's GaussianMixtureConditional);
  training uses additive uniform noise for the rate term and straight-through rounding for
  the synthesis input ("mixed" quantisation).

Entropy coding uses CompressAI's rANS coder with one CDF per latent element (built in
float64 from the mixture and quantised to 16 bits), over a window of integers that covers
μ_k ± 5σ_k of every component of weight ≥ 0.001, at most ±64 around the rounded mixture
mean. Values outside the window are coded through rANS's escape symbol, which carries the
mixture's tail mass, and Elias-gamma bypass bits. So no side information is needed:
unlike CompressAI's ``GaussianMixtureConditional`` (which sends ``abs_max`` and a
per-channel zero bitmap, and builds a CDF of width 2·abs_max+1 for every element), the
streams are self-contained.

Every CDF is a function of floats, so a last-bit difference in the mixture parameters
between encoder and decoder makes a stream decode to noise. (Measured: streams encoded
with one torch thread, decoded with two, came back at 8–11 dB when h_s ran in the
caller's setting; CompressAI's Gaussian models are sheltered by their 64-entry scale
table.) So the mixture parameters and CDFs are always computed the same way: from ẑ one
image at a time, on the CPU, in one thread, whatever batch, device or thread count the
caller uses. ẑ itself is integer-valued and safe. Decode on the same kind of CPU and torch
build that encoded, as with every CompressAI codec.
"""


from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from compressai.ans import RansDecoder, RansEncoder
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN
from compressai.models.base import CompressionModel
from compressai.models.utils import conv, deconv
from compressai.ops import LowerBound
from torch import Tensor, nn

#: Smallest mixture scale (CompressAI's SCALES_MIN).
SCALE_MIN = 0.11
#: Likelihood floor used in training (CompressAI's default).
LIKELIHOOD_MIN = 1e-9
#: Coding windows cover μ_k ± WINDOW_SIGMAS·σ_k of every component …
WINDOW_SIGMAS = 5.0
#: … of every component whose weight is at least this …
WINDOW_MIN_WEIGHT = 1e-3
#: … but no more than this many integers either side of the rounded mixture mean.
WINDOW_MAX_HALF = 64
#: rANS precision in CompressAI's coder (CDFs sum to 2**16).
PRECISION = 16


class GMMHyperprior(CompressionModel):
    """Hyperprior codec with a K-component discretized Gaussian-mixture likelihood.

    Method contract (the same shapes as CompressAI's hyperprior models):

    * ``forward(x)`` → ``{"x_hat": Tensor, "likelihoods": {"y": Tensor, "z": Tensor}}``;
      likelihoods lie in (0, 1] (floored at 1e-9); training uses noise, eval uses round(y).
    * ``compress(x)`` → ``{"strings": [y_strings, z_strings], "shape": (h, w)}`` for a
      batch ``x`` of shape (B, 3, H, W) with H, W multiples of 64. ``y_strings`` and
      ``z_strings`` are lists of B ``bytes``; ``shape`` is the spatial size of z (H/64,
      W/64). There is no side information: a stream is the two byte strings plus
      ``shape`` (and whatever padding record the container adds).
    * ``decompress(strings, shape)`` → ``{"x_hat": Tensor}`` in [0, 1], same layout.
    * ``entropy_decode(strings, shape)`` → ``{"y_hat", "weights", "means", "scales"}``:
      the latents read back by entropy decoding alone (the synthesis is not run).
      ``y_hat`` is (B, M, h·4, w·4); the mixture tensors are (B, K, M, h·4, w·4).
    """

    def __init__(self, N: int = 64, M: int = 64, K: int = 3) -> None:
        super().__init__()
        self.N, self.M, self.K = N, M, K
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.g_a = nn.Sequential(
            conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M),
        )
        self.g_s = nn.Sequential(
            deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
        )
        self.h_a = nn.Sequential(
            conv(M, N, stride=1, kernel_size=3), nn.LeakyReLU(inplace=True),
            conv(N, N), nn.LeakyReLU(inplace=True), conv(N, N),
        )
        self.h_s = nn.Sequential(
            deconv(N, M), nn.LeakyReLU(inplace=True),
            deconv(M, M * 3 // 2), nn.LeakyReLU(inplace=True),
            conv(M * 3 // 2, M * 2, stride=1, kernel_size=3), nn.LeakyReLU(inplace=True),
            nn.Conv2d(M * 2, 3 * K * M, kernel_size=1),
        )
        self.scale_bound = LowerBound(SCALE_MIN)
        self.likelihood_bound = LowerBound(LIKELIHOOD_MIN)

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (4 + 2)

    # -- the mixture ------------------------------------------------------------------
    def split_params(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h_s output (B, 3·K·M, h, w) → weights (softmax over K), means, scales, each
        (B, K, M, h, w)."""
        b, _, h, w = params.shape
        logits, means, scales = params.view(b, 3, self.K, self.M, h, w).unbind(1)
        return torch.softmax(logits, dim=1), means, self.scale_bound(scales)

    def mixture_likelihood(self, y: Tensor, weights: Tensor, means: Tensor, scales: Tensor) -> Tensor:
        """p(y) of the discretized mixture, for y (B, M, h, w); in (0, 1]."""
        values = torch.abs(y.unsqueeze(1) - means)  # symmetric form, as CompressAI's Gaussian
        upper = _std_normal_cdf((0.5 - values) / scales)
        lower = _std_normal_cdf((-0.5 - values) / scales)
        lik = (weights * (upper - lower)).sum(dim=1)
        return self.likelihood_bound(lik).clamp(max=1.0)

    @staticmethod
    def noisy(y: Tensor) -> Tensor:
        return y + torch.empty_like(y).uniform_(-0.5, 0.5)

    @staticmethod
    def ste_round(y: Tensor) -> Tensor:
        return y + (torch.round(y) - y).detach()

    def mixture(self, z_hat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mixture weights, means, scales (each (B, K, M, h, w), on ẑ's device) from ẑ,
        computed one image at a time on the CPU in one thread, so that coding depends on
        neither batch, device nor thread count (see the module docstring). Use these, not
        ``split_params(h_s(z_hat))``, to build CDFs for encode/decode_mixture."""
        h_s = self._cpu_h_s()
        with one_thread():
            parts = [self.split_params(h_s(z_hat[i : i + 1].cpu())) for i in range(z_hat.size(0))]
        return tuple(torch.cat([p[j] for p in parts]).to(z_hat.device) for j in range(3))  # type: ignore[return-value]

    def _cpu_h_s(self) -> nn.Module:
        """``h_s`` itself on a CPU model, else a CPU copy (refreshed when the weights move)."""
        params = list(self.h_s.parameters())
        if params[0].device.type == "cpu":
            return self.h_s
        key = tuple((p.data_ptr(), p._version) for p in params)
        cached = self.__dict__.get("_h_s_cpu")
        if cached is None or cached[0] != key:
            cached = (key, copy.deepcopy(self.h_s).cpu())
            self.__dict__["_h_s_cpu"] = cached  # not a submodule: stays out of state_dict()
        return cached[1]

    _mixture = mixture  # the name bench.codecs.neural first used

    # -- training / estimation --------------------------------------------------------
    def forward(self, x: Tensor) -> dict[str, Any]:
        y = self.g_a(x)
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        weights, means, scales = self.split_params(self.h_s(z_hat))
        y_for_rate = self.noisy(y) if self.training else torch.round(y)
        y_likelihoods = self.mixture_likelihood(y_for_rate, weights, means, scales)
        x_hat = self.g_s(self.ste_round(y))
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    # -- coding -----------------------------------------------------------------------
    @torch.no_grad()
    def compress(self, x: Tensor) -> dict[str, Any]:
        y = self.g_a(x)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        weights, means, scales = self.mixture(z_hat)
        y_q = torch.round(y)
        y_strings = [
            encode_mixture(y_q[i], weights[i], means[i], scales[i]) for i in range(y.size(0))
        ]
        return {"strings": [y_strings, z_strings], "shape": tuple(z.size()[-2:])}

    @torch.no_grad()
    def entropy_decode(self, strings: list[list[bytes]], shape: tuple[int, int] | torch.Size) -> dict[str, Tensor]:
        if len(strings) != 2 or len(strings[0]) != len(strings[1]):
            raise ValueError("strings must be [y_strings, z_strings] with one entry per image each")
        z_hat = self.entropy_bottleneck.decompress(strings[1], tuple(shape))
        weights, means, scales = self.mixture(z_hat)
        y_hat = torch.stack([
            decode_mixture(strings[0][i], weights[i], means[i], scales[i]) for i in range(len(strings[0]))
        ])
        return {"y_hat": y_hat, "weights": weights, "means": means, "scales": scales}

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int] | torch.Size) -> dict[str, Tensor]:
        y_hat = self.entropy_decode(strings, shape)["y_hat"]
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1)}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch's CPU kernels in one thread inside the block (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _std_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-x * (2**-0.5))


# -- the per-element mixture coder -----------------------------------------------------


#: Window half-widths share one padded block of float work per power of two (1, 2, 3–4,
#: 5–8, …, 33–64): a handful of vectorised passes per image instead of one per width.
_WIDTH_CLASS = torch.tensor([0] + [(h - 1).bit_length() for h in range(1, WINDOW_MAX_HALF + 1)])


def mixture_cdfs(weights: Tensor, means: Tensor, scales: Tensor) -> tuple[np.ndarray, list[list[int]], np.ndarray, np.ndarray]:
    """Quantised CDFs for every latent element of one image.

    Arguments are (K, M, h, w). Returns ``(order, cdfs, sizes, offsets)``: elements are
    coded in ``order`` (grouped by window width class, so that each class is one block of
    float work); ``cdfs[j]`` (``sizes[j]`` = window + 2 entries, the escape symbol last)
    and ``offsets[j]`` (the integer of the window's first symbol) belong to element
    ``order[j]`` of the flattened (M·h·w) latent.
    """
    k = weights.size(0)
    w = weights.reshape(k, -1).double()
    mu = means.reshape(k, -1).double()
    sigma = scales.reshape(k, -1).double().clamp(min=SCALE_MIN)
    center = torch.round((w * mu).sum(0))
    # Components too light to matter do not widen the window (their far mass is escaped).
    reach = (((mu - center).abs() + WINDOW_SIGMAS * sigma) * (w >= WINDOW_MIN_WEIGHT)).amax(0)
    half = torch.ceil(reach).clamp(1, WINDOW_MAX_HALF).long()
    width_class = _WIDTH_CLASS[half]
    order = torch.argsort(width_class, stable=True)
    classes, counts = torch.unique_consecutive(width_class[order], return_counts=True)
    cdfs: list[list[int]] = []
    sizes = np.empty(order.numel(), dtype=np.int64)
    offsets = np.empty(order.numel(), dtype=np.int64)
    total = 1 << PRECISION
    start = 0
    for count in counts.tolist():
        idx = order[start : start + count]
        h = half[idx]
        n_sym = 2 * h + 1  # each element's window; its escape symbol follows it
        width = int(n_sym.max())
        off = center[idx].long() - h
        edges = (off.unsqueeze(1) + torch.arange(width + 1).unsqueeze(0)).double() - 0.5
        mixture_cdf = torch.zeros(count, width + 1, dtype=torch.float64)
        for j in range(k):
            mixture_cdf += w[j, idx, None] * _std_normal_cdf((edges - mu[j, idx, None]) / sigma[j, idx, None])
        columns = torch.arange(width + 1).unsqueeze(0)
        pmf = torch.diff(mixture_cdf, dim=1).clamp_(min=0.0) * (columns[:, :width] < n_sym.unsqueeze(1))
        tail = (1.0 - pmf.sum(1, keepdim=True)).clamp_(min=0.0)  # the escape's share
        probs = F.pad(pmf, (0, 1)).scatter_(1, n_sym.unsqueeze(1), tail)
        probs = probs / probs.sum(1, keepdim=True)
        # Every symbol gets at least 1 of 2**16; the rest is shared by probability, and the
        # rounding remainder goes to the most probable symbol.
        used = columns <= n_sym.unsqueeze(1)
        freq = (torch.floor(probs * (total - (n_sym + 1)).unsqueeze(1)).long() + 1) * used
        freq[torch.arange(count), freq.argmax(1)] += total - freq.sum(1)
        rows = F.pad(torch.cumsum(freq, 1), (1, 0)).to(torch.int32).tolist()
        lengths = (n_sym + 2).tolist()
        cdfs.extend(row[:n] for row, n in zip(rows, lengths))
        sizes[start : start + count] = lengths
        offsets[start : start + count] = off.numpy()
        start += count
    return order.numpy(), cdfs, sizes, offsets


def encode_mixture(y_q: Tensor, weights: Tensor, means: Tensor, scales: Tensor) -> bytes:
    """rANS-code one image's integer latents ``y_q`` (M, h, w) under its mixture."""
    with one_thread():
        order, cdfs, sizes, offsets = mixture_cdfs(*(t.cpu() for t in (weights, means, scales)))
    y_q = y_q.cpu()
    symbols = y_q.reshape(-1).to(torch.int64).numpy()[order]
    n = len(order)
    return RansEncoder().encode_with_indexes(
        symbols.astype(np.int32).tolist(), list(range(n)), cdfs, sizes.astype(np.int32).tolist(), offsets.astype(np.int32).tolist()
    )


def decode_mixture(string: bytes, weights: Tensor, means: Tensor, scales: Tensor) -> Tensor:
    """Inverse of :func:`encode_mixture`: the (M, h, w) float tensor of integer latents (CPU)."""
    with one_thread():
        order, cdfs, sizes, offsets = mixture_cdfs(*(t.cpu() for t in (weights, means, scales)))
    n = len(order)
    values = RansDecoder().decode_with_indexes(
        string, list(range(n)), cdfs, sizes.astype(np.int32).tolist(), offsets.astype(np.int32).tolist()
    )
    flat = np.empty(n, dtype=np.float32)
    flat[order] = np.asarray(values, dtype=np.float32)
    return torch.from_numpy(flat).reshape(weights.shape[1:])


def mixture_bits(y_q: Tensor, weights: Tensor, means: Tensor, scales: Tensor) -> float:
    """Ideal code length of ``y_q`` in bits under the (unquantised) mixture, for checks."""
    weights, means, scales, y_q = (t.detach() for t in (weights, means, scales, y_q))
    lik = (weights.double() * (
        _std_normal_cdf((y_q.double() + 0.5 - means.double()) / scales.double())
        - _std_normal_cdf((y_q.double() - 0.5 - means.double()) / scales.double())
    )).sum(0)
    return float(-torch.log2(lik.clamp(min=1e-300)).sum())


__all__ = ["GMMHyperprior", "encode_mixture", "decode_mixture", "mixture_cdfs", "mixture_bits"]
