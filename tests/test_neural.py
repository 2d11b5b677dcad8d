"""CompressAI codecs on small Kodak crops, with small untrained models of the real classes.

The reference for bit-exactness is CompressAI's own ``compress``/``decompress`` on the
padded batch the codec forms (never a batch of one: see ``bench.codecs.neural``).
"""

from __future__ import annotations

import io
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

# compressai comes with the `neural` extra, which `make test` installs: a missing one fails here
import compressai.zoo.image  # noqa: E402
from compressai import models as cm  # noqa: E402

from bench.codecs import CODECS, OperatingPoint  # noqa: E402
from bench.codecs import neural  # noqa: E402
from bench.codecs.gmm import GMMHyperprior  # noqa: E402
from bench.codecs.base import validate_codec_class  # noqa: E402
from bench.codecs.bitstream import write_varint  # noqa: E402
from bench.codecs.neural import CompressAICodec  # noqa: E402
from bench.errors import CodecError  # noqa: E402

ZOO_ARCHS = ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "mbt2018",
             "cheng2020-anchor", "cheng2020-attn"]
ARCHS = [*ZOO_ARCHS, "gmm-hyperprior"]
FAST = ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "gmm-hyperprior"]  # not autoregressive
EMBEDDED = {"bmshj2018-hyperprior": "hyperprior", "mbt2018-mean": "mean-scale", "gmm-hyperprior": "gmm"}
Q = 3


#: Two OpenMP threads on two shared cores wait on each other for every small convolution.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(arch: str, seed: int = 0) -> cm.CompressionModel:
    """A small untrained model; g_a's last layer is scaled up so latents are not all zero."""
    torch.manual_seed(seed)
    model = {
        "bmshj2018-factorized": lambda: cm.FactorizedPrior(16, 24),
        "bmshj2018-hyperprior": lambda: cm.ScaleHyperprior(16, 24),
        "mbt2018-mean": lambda: cm.MeanScaleHyperprior(16, 24),
        "mbt2018": lambda: cm.JointAutoregressiveHierarchicalPriors(16, 24),
        "cheng2020-anchor": lambda: cm.Cheng2020Anchor(16),
        "cheng2020-attn": lambda: cm.Cheng2020Attention(16),
        "gmm-hyperprior": lambda: GMMHyperprior(16, 24),
    }[arch]()
    last = [m for m in model.g_a.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.mul_(20)
        last.bias.mul_(20)
    model.update(force=True)
    return model.eval()


_MODELS: dict[str, cm.CompressionModel] = {}


def codec_for(arch: str, **params: Any) -> CompressAICodec:
    if arch not in _MODELS:
        _MODELS[arch] = tiny_model(arch)
    return CompressAICodec.from_model(arch, _MODELS[arch], Q, **params)


@pytest.fixture
def crops(kodak_images: list[np.ndarray]) -> list[np.ndarray]:
    """Eight different 64x64 crops."""
    im = kodak_images[22]
    return [np.ascontiguousarray(im[40 * i : 40 * i + 64, 60 * i : 60 * i + 64]) for i in range(8)]


def compressai_reference(model: cm.CompressionModel,
                         images: list[np.ndarray]) -> tuple[list[list[bytes]], list[np.ndarray]]:
    """CompressAI's own strings and reconstructions (uint8, cropped) for equal-size images."""
    h, w = images[0].shape[:2]
    hp, wp = -(-h // 64) * 64, -(-w // 64) * 64
    x = torch.stack([neural._to_tensor(im, hp, wp) for im in images])
    if len(images) == 1:
        x = torch.cat([x, x])
    with torch.no_grad():
        out = model.compress(x)
        x_hat = model.decompress(out["strings"], out["shape"])["x_hat"]
    strings = [[s[i] for s in out["strings"]] for i in range(len(images))]
    decoded = [neural._to_uint8(x_hat[i], h, w) for i in range(len(images))]
    return strings, decoded


def header_size(image: np.ndarray, strings: list[bytes]) -> int:
    h, w = image.shape[:2]
    return 5 + len(write_varint(h)) + len(write_varint(w)) + sum(len(write_varint(len(s))) for s in strings) + 2


# -- every architecture ------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_is_compressai_bit_for_bit(arch: str, crops: list[np.ndarray]) -> None:
    codec = codec_for(arch)
    image = crops[1]
    [stream] = codec.encode([image], OperatingPoint(Q))
    [decoded] = codec.decode([stream])
    [strings], [expected] = compressai_reference(_MODELS[arch], [image])
    assert np.array_equal(decoded, expected)
    # the stream is the header and CompressAI's strings, nothing else: all of it is the rate
    assert stream.endswith(b"".join(strings))
    assert len(stream) == header_size(image, strings) + sum(len(s) for s in strings)
    assert codec.rate_bits(stream) == 8 * len(stream)
    assert not codec.rate_is_estimate


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_size_does_not_change_bytes_or_pixels(arch: str, crops: list[np.ndarray]) -> None:
    codec = codec_for(arch)
    codec.max_batch = 8
    point = OperatingPoint(Q)
    batched = codec.encode(crops, point)
    assert batched == [codec.encode([im], point)[0] for im in crops]
    codec.max_batch = 3  # chunks of 3, 3, 2
    assert codec.encode(crops[:5], point) == batched[:5]
    decoded = codec.decode(batched)
    assert all(np.array_equal(a, codec.decode([s])[0]) for a, s in zip(decoded[:3], batched))
    _, expected = compressai_reference(_MODELS[arch], crops)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, expected))


@pytest.mark.parametrize("arch", ARCHS)
def test_transforms_are_batch_invariant_to_the_last_bit(arch: str) -> None:
    # PyTorch's CPU convolutions take another path for a batch of one; run naively, a
    # single image's h_s (and cheng2020's g_a, g_s) differ from the batched ones in the
    # last bits, enough to flip a scale index between encoder and decoder now and then.
    codec = codec_for(arch)
    codec.max_batch = 8
    model = _MODELS[arch]
    torch.manual_seed(1)
    x = torch.rand(8, 3, 64, 64)
    with torch.no_grad():
        y = torch.round(model.g_a(x))
        inputs = {"g_a": x, "g_s": y}
        if hasattr(model, "h_s"):
            inputs["h_s"] = torch.round(model.h_a(y))
        for name, inp in inputs.items():
            fn = getattr(model, name)
            together = codec._batched(fn, inp)
            alone = torch.cat([codec._batched(fn, inp[i : i + 1]) for i in range(8)])
            assert torch.equal(together, alone), name


def test_one_pass_scale_indexes_are_compressai_s() -> None:
    codec_for("bmshj2018-hyperprior")
    gc = _MODELS["bmshj2018-hyperprior"].gaussian_conditional
    table = gc.scale_table
    torch.manual_seed(0)
    scales = torch.cat([table, table.nextafter(table + 1), table.nextafter(table - 1), torch.tensor([0.0, -1.0, 1e9]),
                        torch.exp(torch.empty(10000).uniform_(-4, 7))]).reshape(1, 1, -1, 1)
    assert torch.equal(neural.build_indexes(gc, scales), gc.build_indexes(scales))


@pytest.mark.parametrize("arch", ARCHS)
def test_latents_are_what_the_synthesis_transform_gets(arch: str, crops: list[np.ndarray]) -> None:
    codec = codec_for(arch)
    model = _MODELS[arch]
    image = np.ascontiguousarray(crops[2][:45, :64])  # padded to 64x64
    [stream] = codec.encode([image], OperatingPoint(Q))
    [lat] = codec.latents([stream])
    assert lat.y_hat.shape == (model.M, 4, 4)
    assert (lat.arch, lat.quality, lat.size) == (arch, Q, (45, 64))
    seen: list[torch.Tensor] = []
    hook = model.g_s.register_forward_pre_hook(lambda _m, args: seen.append(args[0][:1].clone()))
    try:
        compressai_reference(model, [image])
    finally:
        hook.remove()
    assert torch.equal(lat.y_hat, seen[0][0])
    has_scales = arch != "bmshj2018-factorized"
    has_means = arch not in ("bmshj2018-factorized", "bmshj2018-hyperprior")
    assert (lat.scales is not None, lat.means is not None) == (has_scales, has_means)
    assert (lat.weights is not None) == (arch == "gmm-hyperprior")
    param_shape = (3, *lat.y_hat.shape) if arch == "gmm-hyperprior" else lat.y_hat.shape
    for t in (lat.scales, lat.means, lat.weights):
        assert t is None or t.shape == param_shape


# -- sizes, grouping, the container -------------------------------------------------------


def test_odd_and_mixed_sizes_round_trip_in_order(kodak_crop: np.ndarray) -> None:
    codec = codec_for("bmshj2018-hyperprior")
    images = [np.ascontiguousarray(kodak_crop[:h, :w]) for h, w in [(70, 45), (64, 64), (45, 70), (70, 45), (1, 1)]]
    streams = codec.encode(images, OperatingPoint(Q))
    decoded = codec.decode(streams)
    assert [d.shape for d in decoded] == [im.shape for im in images]
    for im, stream, dec in zip(images, streams, decoded):
        [alone] = codec.decode(codec.encode([im], OperatingPoint(Q)))
        assert np.array_equal(dec, alone)
        assert codec.latents([stream])[0].size == im.shape[:2]


def test_header_is_compact(kodak_images: list[np.ndarray]) -> None:
    codec = codec_for("bmshj2018-hyperprior")
    image = kodak_images[0]  # 512x768
    [stream] = codec.encode([image], OperatingPoint(Q))
    [strings], _ = compressai_reference(_MODELS["bmshj2018-hyperprior"], [image])
    assert len(stream) - sum(len(s) for s in strings) == header_size(image, strings) <= 16


def corruptions(stream: bytes, jpeg: bytes, other_arch: bytes, other_weights: bytes) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    varint_at = 5 + 1 + 1  # first string length of a 64x64 image (sides take 1 byte each)
    return {
        "jpeg file": jpeg,
        "random bytes": rng.integers(0, 256, 300, dtype=np.uint8).tobytes(),
        "magic and junk": b"BN" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes(),
        "empty": b"",
        "header only": stream[:6],
        "truncated by one": stream[:-1],
        "one byte longer": stream + b"\0",
        "length byte altered": stream[:varint_at] + bytes([stream[varint_at] ^ 0x01]) + stream[varint_at + 1 :],
        "payload byte flipped": stream[:-3] + bytes([stream[-3] ^ 0x40]) + stream[-2:],
        "quality out of range": stream[:4] + bytes([200]) + stream[5:],
        "version altered": stream[:2] + bytes([9]) + stream[3:],
        "another architecture": other_arch,
        "other weights": other_weights,
    }


def test_corrupt_truncated_and_foreign_streams_raise_codec_error(crops: list[np.ndarray]) -> None:
    image = crops[0]
    codec = codec_for("mbt2018-mean")
    [stream] = codec.encode([image], OperatingPoint(Q))
    assert stream[5] == 64 and stream[6] == 64  # single-byte varints, as corruptions() assumes
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG")
    [other_arch] = codec_for("bmshj2018-hyperprior").encode([image], OperatingPoint(Q))
    other = CompressAICodec.from_model("mbt2018-mean", tiny_model("mbt2018-mean", seed=1), Q)
    [other_weights] = other.encode([image], OperatingPoint(Q))
    for what, bad in corruptions(stream, buf.getvalue(), other_arch, other_weights).items():
        for read in (codec.decode, codec.latents):
            with pytest.raises(CodecError, match="corrupt or foreign stream") as info:
                read([stream, bad])
            assert info.type is CodecError, what
    with pytest.raises(CodecError, match="no weights for quality 4"):
        codec.decode([stream[:4] + bytes([4]) + stream[5:]])
    with pytest.raises(CodecError, match="must be bytes"):
        codec.decode(["not bytes"])  # type: ignore[list-item]


# -- entropy estimation ---------------------------------------------------------------------


@pytest.mark.parametrize("arch", [*FAST, "mbt2018"])
def test_estimate_containers_say_so_and_decode(arch: str, crops: list[np.ndarray]) -> None:
    real, est = codec_for(arch), codec_for(arch, entropy_estimation=True)
    assert est.rate_is_estimate
    point = OperatingPoint(Q)
    streams, containers = real.encode(crops[:3], point), est.encode(crops[:3], point)
    for image, container in zip(crops, containers):
        bits = est.rate_bits(container)
        assert bits != 8 * len(container)
        with torch.no_grad():  # the estimate is what CompressAI's forward() reports
            likelihoods = _MODELS[arch](neural._to_tensor(image, 64, 64)[None])["likelihoods"]
        assert bits == pytest.approx(sum(float(-torch.log2(v).sum()) for v in likelihoods.values()), rel=1e-5)
        assert real.rate_bits(container) == bits  # a container says what it is to any reader
    decoded = est.decode(containers)
    assert [d.shape for d in decoded] == [c.shape for c in crops[:3]]
    if arch != "mbt2018":  # the same y_hat as the real coder; mbt2018 follows forward(): round(y)
        assert all(np.array_equal(a, b) for a, b in zip(decoded, real.decode(streams)))
        for a, b in zip(est.latents(containers), real.latents(streams)):
            assert torch.equal(a.y_hat, b.y_hat)


# -- weights ----------------------------------------------------------------------------------


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def test_zoo_offline_names_the_file_and_folder(hub_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                               crops: list[np.ndarray]) -> None:
    def no_network(url: str, **kwargs: Any) -> Any:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(compressai.zoo.image, "load_state_dict_from_url", no_network)
    codec = CODECS.get("bmshj2018-hyperprior")()
    file = "bmshj2018-hyperprior-3-6d87be32.pth.tar"
    for reason in (codec.unavailable_reason(), codec.unavailable_reason(3)):
        assert reason is not None and "not cached" in reason and str(hub_dir) in reason
    assert file in codec.unavailable_reason(3)  # type: ignore[operator]
    with pytest.raises(CodecError) as info:
        codec.encode(crops[:1], OperatingPoint(3))
    assert file in str(info.value) and str(hub_dir) in str(info.value)
    assert codec.identity()["weights"]["3"] == f"zoo:{file}"
    assert CODECS.get("bmshj2018-hyperprior")(metric="ms-ssim").identity()["weights"]["3"] != f"zoo:{file}"


def test_zoo_loads_from_the_hub_cache(hub_dir: Path, monkeypatch: pytest.MonkeyPatch, crops: list[np.ndarray]) -> None:
    file = neural.zoo_file("bmshj2018-hyperprior", "mse", 3)
    hub_dir.mkdir(parents=True)
    torch.save(tiny_model("bmshj2018-hyperprior").state_dict(), hub_dir / file)

    def from_cache(url: str, **kwargs: Any) -> Any:  # what torch hub does with a cached file
        return torch.load(hub_dir / Path(url).name, weights_only=True)

    monkeypatch.setattr(compressai.zoo.image, "load_state_dict_from_url", from_cache)
    codec = CODECS.get("bmshj2018-hyperprior")()
    assert codec.unavailable_reason(3) is None and codec.unavailable_reason() is None
    assert codec.unavailable_reason(4) is not None
    reference = codec_for("bmshj2018-hyperprior")
    streams = codec.encode(crops[:2], OperatingPoint(3))
    expected = reference.decode(reference.encode(crops[:2], OperatingPoint(3)))
    assert all(np.array_equal(a, b) for a, b in zip(codec.decode(streams), expected))


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "before-update"])
def test_checkpoint_file_loads_through_weights_path(wrap: str, tmp_path: Path, crops: list[np.ndarray]) -> None:
    arch = "mbt2018-mean"
    model = tiny_model(arch)
    state = model.state_dict()
    if wrap == "before-update":  # a training checkpoint: no entropy-coder tables yet
        tables = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
        state = {k: v for k, v in state.items() if not k.endswith(tables)}
    path = tmp_path / f"ckpt-q{Q}.pth.tar"
    torch.save({"epoch": 3, "state_dict": state} if wrap == "state_dict" else state, path)
    codec = CODECS.get(arch)(weights=str(tmp_path / "ckpt-q{quality}.pth.tar"))
    assert codec.unavailable_reason(Q) is None and codec.unavailable_reason(Q + 1) is not None
    streams = codec.encode(crops[:2], OperatingPoint(Q))
    reference = codec_for(arch)
    expected = reference.encode(crops[:2], OperatingPoint(Q))
    # the same strings; only the check differs, as it covers the weights id
    assert [codec._parse(s)[1] for s in streams] == [reference._parse(s)[1] for s in expected]
    assert all(np.array_equal(a, b) for a, b in zip(codec.decode(streams), reference.decode(expected)))
    identity = codec.identity()
    assert identity["params"]["weights"] == "checkpoint" and str(tmp_path) not in str(identity)
    torch.save(tiny_model(arch, seed=5).state_dict(), path)
    assert CODECS.get(arch)(weights=str(tmp_path / "ckpt-q{quality}.pth.tar")).identity() != identity


def test_checkpoint_of_another_architecture_is_a_clean_error(tmp_path: Path, crops: list[np.ndarray]) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save(tiny_model("bmshj2018-factorized").state_dict(), path)
    with pytest.raises(CodecError, match="does not hold mbt2018-mean weights"):
        CODECS.get("mbt2018-mean")(weights=str(path)).encode(crops[:1], OperatingPoint(Q))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CodecError, match="cannot read checkpoint"):
        CODECS.get("mbt2018-mean")(weights=str(path)).encode(crops[:1], OperatingPoint(Q))


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_shipped_embedded_weights_round_trip(name: str, crops: list[np.ndarray]) -> None:
    from bench.train_codec import load_codec

    family = EMBEDDED[name]
    codec = CODECS.get(name)(weights="embedded")
    assert codec.unavailable_reason(1) is None, codec.unavailable_reason(1)
    assert set(codec.identity()["weights"]) >= {"1", "2", "3"}
    assert all(w.startswith("embedded:") for w in codec.identity()["weights"].values())
    [stream] = codec.encode(crops[3:4], OperatingPoint(1))
    [decoded] = codec.decode([stream])
    model, config = load_codec(neural.WEIGHTS_DIR / f"{family}-q1.pt")
    [strings], [expected] = compressai_reference(model, crops[3:4])
    assert config["family"] == family
    assert np.array_equal(decoded, expected) and stream.endswith(b"".join(strings))


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_shipped_embedded_models_trade_rate_for_quality(name: str, kodak_images: list[np.ndarray]) -> None:
    """Qualities 1 < 2 < 3 of each embedded family: more bytes and higher PSNR on real photos
    (four 256×256 Kodak crops; benchmarks/kodak_rd.py measures all 24 full images)."""
    from bench.transcode import transcode_chunk

    images = [np.ascontiguousarray(im[128:384, 128:384]) for im in kodak_images[::6]]
    codec = CODECS.get(name)(weights="embedded")
    points = []
    for q in (1, 2, 3):
        r = transcode_chunk(codec, OperatingPoint(q), images)
        points.append((sum(len(s) for s in r.streams), float(np.mean(r.psnr))))
    assert [b for b, _ in points] == sorted({b for b, _ in points}), points
    assert [p for _, p in points] == sorted({p for _, p in points}), points
    assert points[0][1] > 20, points  # a working codec: a broken one decodes to noise (~10 dB)


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_streams_decode_under_another_thread_count(name: str, kodak_images: list[np.ndarray]) -> None:
    """A run encodes in single-thread workers and may decode (scenario D's latents) in a
    process with more threads: the bytes and the entropy-decoded latents must not change.
    (The synthesis transform's floats may, by a last bit: at most ±1 in a pixel.)"""
    images = [np.ascontiguousarray(im[:192, :256]) for im in kodak_images[:3]]
    images += [np.ascontiguousarray(im[100:164, 100:164]) for im in kodak_images[3:6]]
    codec = CODECS.get(name)(weights="embedded")
    streams = codec.encode(images, OperatingPoint(2))  # one thread (module fixture)
    decoded, latents = codec.decode(streams), codec.latents(streams)
    torch.set_num_threads(2)
    try:
        assert codec.encode(images, OperatingPoint(2)) == streams
        assert all(torch.equal(a.y_hat, b.y_hat) for a, b in zip(codec.latents(streams), latents))
        for a, b in zip(codec.decode(streams), decoded):
            assert np.abs(a.astype(int) - b).max() <= 1
    finally:
        torch.set_num_threads(1)


def test_missing_embedded_weights_say_what_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  crops: list[np.ndarray]) -> None:
    monkeypatch.setattr(neural, "WEIGHTS_DIR", tmp_path)
    (tmp_path / "hyperprior-q1.pt").write_bytes(b"not really")
    codec = CODECS.get("bmshj2018-hyperprior")(weights="embedded")
    reason = codec.unavailable_reason(2)
    assert reason is not None and "hyperprior-q2.pt" in reason and "present: hyperprior-q1.pt" in reason
    with pytest.raises(CodecError, match=r"no embedded weights hyperprior-q2.pt .*present: hyperprior-q1.pt"):
        codec.encode(crops[:1], OperatingPoint(2))
    with pytest.raises(CodecError, match="hyperprior-q1.pt"):  # unreadable file: a clean error naming it
        codec.encode(crops[:1], OperatingPoint(1))
    assert "no embedded weights" in CODECS.get("mbt2018")(weights="embedded").unavailable_reason()
    assert "no zoo weights" in CODECS.get("gmm-hyperprior")(weights="zoo").unavailable_reason()


# -- parameters and registry ----------------------------------------------------------------


def test_parameters_are_strict() -> None:
    cls = CODECS.get("bmshj2018-hyperprior")
    with pytest.raises(ValidationError):
        cls(qualty=3)
    with pytest.raises(ValidationError):
        cls(metric="psnr")
    with pytest.raises(ValidationError, match="checkpoint decides"):
        cls(metric="ms-ssim", weights="/some/ckpt.pt")
    with pytest.raises(ValidationError, match="MSE-trained"):
        cls(metric="ms-ssim", weights="embedded")
    assert cls().check_quality(9) is not None and CODECS.get("cheng2020-attn")().check_quality(7) is not None


@pytest.mark.parametrize("name", ARCHS)
def test_registered_as_neural_codecs(name: str) -> None:
    cls = CODECS.get(name)
    validate_codec_class(name, cls)
    codec = cls()
    assert codec.kind == "neural" and codec.name == name
    ranges = {"cheng2020-anchor": (1, 6), "cheng2020-attn": (1, 6), "gmm-hyperprior": (1, 3)}
    assert codec.quality_range == ranges.get(name, (1, 8))
    assert "compressai-" in codec.version and "torch-" in codec.version
    assert codec.to("cpu") is codec and codec.device == torch.device("cpu")
