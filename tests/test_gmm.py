"""The Gaussian-mixture hyperprior: exact round trips through real rANS bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.codecs.gmm import GMMHyperprior, decode_mixture, encode_mixture, mixture_bits, mixture_cdfs
from bench.train_codec import pad_to, to_tensor


@pytest.fixture(scope="module")
def model() -> GMMHyperprior:
    """A tiny untrained model, pushed so that its latents span many integers and its
    mixtures differ from element to element (an untrained g_a gives all-zero latents)."""
    torch.manual_seed(0)
    m = GMMHyperprior(N=16, M=24)
    with torch.no_grad():
        m.g_a[-1].weight.mul_(40.0)
        m.h_s[-1].bias.normal_(0.0, 1.5)
        m.h_s[-1].weight.mul_(5.0)
    m.eval()
    m.update(force=True)
    return m


def _round_trip(model: GMMHyperprior, x: torch.Tensor) -> tuple[dict, torch.Tensor]:
    out = model.compress(x)
    decoded = model.entropy_decode(out["strings"], out["shape"])
    with torch.no_grad():
        y_q = torch.round(model.g_a(x))
    return out, decoded["y_hat"], y_q


def test_round_trip_is_exact(model: GMMHyperprior, kodak_crop: np.ndarray) -> None:
    x = to_tensor(kodak_crop[:64, :64]).unsqueeze(0)
    out, y_hat, y_q = _round_trip(model, x)
    assert y_q.abs().max() >= 3, "the test model should produce non-trivial latents"
    assert torch.equal(y_hat, y_q)
    assert out["shape"] == (1, 1)
    assert set(out) == {"strings", "shape"}  # no side information: the bytes are the stream
    assert all(isinstance(s, bytes) for group in out["strings"] for s in group)
    x_hat = model.decompress(out["strings"], out["shape"])["x_hat"]
    assert x_hat.shape == x.shape and 0.0 <= float(x_hat.min()) and float(x_hat.max()) <= 1.0


def test_odd_sized_input_is_padded_and_round_trips(model: GMMHyperprior, kodak_crop: np.ndarray) -> None:
    x = pad_to(to_tensor(kodak_crop[:75, :101]).unsqueeze(0))
    assert x.shape[-2:] == (128, 128)
    _, y_hat, y_q = _round_trip(model, x)
    assert torch.equal(y_hat, y_q)


def test_streams_decode_whatever_batch_they_were_encoded_in(model: GMMHyperprior, kodak_crop: np.ndarray) -> None:
    x = torch.stack([to_tensor(kodak_crop[:64, :128]), to_tensor(kodak_crop[64:128, 64:192])])
    out = model.compress(x)
    for i in range(2):
        alone = model.entropy_decode([[out["strings"][0][i]], [out["strings"][1][i]]], out["shape"])["y_hat"]
        with torch.no_grad():
            assert torch.equal(alone[0], torch.round(model.g_a(x[i : i + 1]))[0])


def test_real_bytes_match_the_ideal_code_length() -> None:
    """Latents drawn from their own mixtures cost what the mixture says, within the 16-bit
    CDF rounding and the rANS flush."""
    torch.manual_seed(4)
    k, m, h, w = 3, 16, 16, 16
    weights = torch.softmax(torch.randn(k, m, h, w) * 2, 0)
    means = torch.randn(k, m, h, w) * 4
    scales = torch.exp(torch.randn(k, m, h, w)).clamp(0.11, 50)
    pick = torch.multinomial(weights.permute(1, 2, 3, 0).reshape(-1, k), 1).reshape(1, m, h, w)
    y_q = torch.round(torch.gather(means, 0, pick) + torch.gather(scales, 0, pick) * torch.randn(1, m, h, w))[0]
    ideal = mixture_bits(y_q, weights, means, scales)
    real = 8 * len(encode_mixture(y_q, weights, means, scales))
    assert ideal > 5000
    assert ideal <= real <= ideal * 1.02 + 64


def test_values_far_outside_the_windows_use_the_escape_and_round_trip() -> None:
    torch.manual_seed(1)
    k, m, h, w = 3, 4, 5, 6
    weights = torch.softmax(torch.randn(k, m, h, w), 0)
    means = torch.randn(k, m, h, w) * 3
    scales = torch.rand(k, m, h, w) * 2 + 0.11
    y_q = torch.round(torch.randn(m, h, w) * 500)  # most values far outside μ ± 5σ
    assert torch.equal(decode_mixture(encode_mixture(y_q, weights, means, scales), weights, means, scales), y_q)


def test_cdfs_are_valid_16_bit_tables() -> None:
    torch.manual_seed(2)
    k, m, h, w = 3, 8, 4, 4
    weights = torch.softmax(torch.randn(k, m, h, w), 0)
    means = torch.randn(k, m, h, w) * 10
    scales = torch.exp(torch.randn(k, m, h, w) * 2).clamp(0.11, 200)
    order, cdfs, sizes, offsets = mixture_cdfs(weights, means, scales)
    assert sorted(order.tolist()) == list(range(m * h * w))
    for cdf, n in zip(cdfs, sizes):
        row = np.asarray(cdf[:n])
        assert row[0] == 0 and row[-1] == 1 << 16
        assert (np.diff(row) >= 1).all()  # every symbol, escape included, stays codable


def test_mixture_weights_sum_to_one_and_likelihoods_are_probabilities(model: GMMHyperprior) -> None:
    params = torch.randn(2, 3 * model.K * model.M, 3, 5) * 4
    weights, means, scales = model.split_params(params)
    assert weights.shape == (2, model.K, model.M, 3, 5)
    assert torch.allclose(weights.sum(1), torch.ones(2, model.M, 3, 5), atol=1e-6)
    assert float(scales.min()) >= 0.11 - 1e-6
    x = torch.rand(2, 3, 64, 64)
    for training in (True, False):
        model.train(training)
        with torch.no_grad():
            lik = model(x)["likelihoods"]
        for v in lik.values():
            assert float(v.min()) > 0.0 and float(v.max()) <= 1.0
    model.eval()
