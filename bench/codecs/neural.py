"""CompressAI's learned image codecs (bmshj2018, mbt2018, cheng2020, and bench's GMM
hyperprior) as bench codecs.

Each stream is a real bitstream in the container of ``bench.codecs.bitstream``: header
and rANS strings, all counted in the rate. Images are padded on the right and bottom by
edge replication up to a multiple of 64 and cropped back after decoding. Pixels go in as
``x / 255`` and come out as ``round(255 * clamp(x_hat, 0, 1))``.

Batching. ``encode`` and ``decode`` group images by padded size and run the transforms
(g_a, h_a, h_s, g_s) over each group as one batch on ``self.device``; entropy coding is
per image, so a stream never depends on its neighbours. The bytes do not depend on the
batch size either, which needs care: PyTorch's CPU convolution takes a different path
for a batch of one (its native kernel instead of oneDNN for small inputs with kernels of
3x3 or less, e.g. GDN's 1x1 convolutions and the hyper-synthesis on a small z) and, on
one thread, for 1x1 kernels at a batch of 16 or more; the paths differ in the last float
bit, which flips a rounded latent now and then and - worse - can flip a scale index
between encoder and decoder, so that the stream decodes to noise. Measured with torch
2.14 on this CPU: batches of 2..8 give bit-identical results for every architecture; a
batch of 1 does not (h_s of every hyperprior model, g_a and g_s of cheng2020). So the
transforms never run on a batch of one (a single image is paired with a copy of itself)
nor on more than ``max_batch`` images (8; 2 on a single CPU thread, where larger batches
are no faster). The bytes were also the same with 1 and 2 threads for the three
architectures tried, but decoding with another thread count than the encoder's gave
cheng2020's mu hat with a different last bit (one pixel off by one level): decode with
the thread count, device and library versions that encoded.

Device. The runner may move a codec with ``codec.to("cuda")``; the device is not part of
the codec's identity. Entropy coding on a GPU is not bit-exact across devices: a stream
must be decoded on the device (and with the library versions) that produced it. The
autoregressive models (mbt2018, cheng2020) code latents one position at a time and are
slow anywhere; CompressAI recommends the CPU for them.

Weights (``weights`` parameter): ``"zoo"`` loads CompressAI's pretrained weights from the
torch hub cache (downloading them when there is a network); ``"embedded"`` loads the
small MSE-trained weights shipped in ``bench/codecs/weights`` for bmshj2018-hyperprior,
mbt2018-mean and gmm-hyperprior (see ``load_embedded``); anything else is a checkpoint
path, in which ``{quality}`` is replaced by the quality (a path without it is used for
every quality). What the weights are (the zoo file, or the sha256 of the file) is part of
``identity()`` and of every stream's check.

Entropy estimation (``entropy_estimation: true``) skips the entropy coder for the latents
y: the stream is then an *estimate container* (flagged in its header) holding the
quantised latents and the likelihood estimate -sum(log2 p) over y and z, as CompressAI's
``forward`` reports it, without header or coder overhead. ``rate_is_estimate`` is True and
``rate_bits(stream)`` returns the estimate; ``len(stream)`` is NOT the rate. Estimate and
reconstruction are those of ``forward`` in eval mode; for mbt2018 and cheng2020 that
means y_hat = round(y) with the context model run in parallel: fast, but not quite the
real coder's y_hat = round(y - mu) + mu, which needs the sequential pass.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import Tensor

from bench.codecs import bitstream
from bench.codecs.base import Codec, CodecParams, OperatingPoint
from bench.errors import CodecError
from bench.images import rgb8_problem
from bench.weights import FETCH_HINT, WeightFile, hub_checkpoints_dir

try:  # an optional extra: without it the codecs are registered but unavailable
    with warnings.catch_warnings():
        # compressai scripts a few helpers at import: torch's deprecation notice for that
        # is not the user's business on every run
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
        import compressai
        import compressai.models
        import compressai.zoo
        from compressai.models import CompressionModel
        from compressai.zoo.image import model_urls
        from compressai.zoo.pretrained import load_pretrained

    _MISSING: str | None = None
    _COMPRESSAI_VERSION = compressai.__version__
except ImportError as exc:
    _MISSING = f"compressai is not installed ({exc}); pip install 'bench[neural]'"
    _COMPRESSAI_VERSION = "missing"
    model_urls = {}

#: Where embedded weights live: ``<family>-q<quality>.pt`` (see ``load_embedded``).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Images are padded to a multiple of this (the latent z is 1/64 of the image).
PAD_MULTIPLE = 64
#: The context models' masked convolution (CompressAI's ``_compress_ar`` arguments).
_AR_KERNEL, _AR_PADDING = 5, 2


@dataclass(frozen=True)
class Latents:
    """A stream's latents, read back by entropy decoding alone (g_s is not run).

    ``y_hat`` is ``(M, Hp/16, Wp/16)`` for the padded image size ``Hp x Wp``; the first
    ``ceil(H/16) x ceil(W/16)`` positions cover the original ``size``. ``scales`` (sigma hat)
    and ``means`` (mu hat) are the entropy parameters of y_hat where the model has them.
    """

    y_hat: Tensor
    scales: Tensor | None
    means: Tensor | None
    arch: str
    quality: int
    #: Original image (height, width).
    size: tuple[int, int]
    #: Mixture weights of a Gaussian-mixture model; its scales, means and weights are
    #: then ``(K, M, Hp/16, Wp/16)``, one slice per component.
    weights: Tensor | None = None


class NeuralParams(CodecParams):
    #: Which zoo weights: trained for MSE or for MS-SSIM (embedded ones are all MSE).
    metric: Literal["mse", "ms-ssim"] = "mse"
    #: "zoo", "embedded", or a checkpoint path (``{quality}`` is replaced by the quality).
    weights: str = "zoo"
    #: Report the likelihood estimate instead of coding y (see the module docstring).
    entropy_estimation: bool = False

    @model_validator(mode="after")
    def _metric_selects_zoo_weights(self) -> NeuralParams:
        if self.metric != "mse" and self.weights != "zoo":
            raise ValueError("metric selects zoo weights; embedded weights are MSE-trained, "
                             "a checkpoint decides its own")
        return self


# -- weights ------------------------------------------------------------------------------


def zoo_file(arch: str, metric: str, quality: int) -> str:
    """The file name CompressAI's zoo downloads, e.g. ``bmshj2018-hyperprior-3-6d87be32.pth.tar``."""
    return Path(urlparse(model_urls[arch][metric][quality]).path).name


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """First 16 hex digits of the file's sha256 (cached while size and mtime are unchanged)."""
    st = path.stat()
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)


def state_dict_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _model_from_state_dict(cls: type[CompressionModel], state: Mapping[str, Tensor]) -> CompressionModel:
    """Build ``cls`` from a state dict (N and M inferred by CompressAI's ``from_state_dict``).

    Floating tensors are widened to fp32. A training checkpoint saved before ``update()``
    has no entropy-coder tables; they are then computed here.
    """
    sd = {k: v.float() if v.is_floating_point() else v for k, v in load_pretrained(dict(state)).items()}
    tables = {"entropy_bottleneck": ("_quantized_cdf", "_offset", "_cdf_length"),
              "gaussian_conditional": ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")}
    computed = False
    for module, names in tables.items():
        if any(k.startswith(f"{module}.") for k in sd):
            for name in names:
                if f"{module}.{name}" not in sd:
                    sd[f"{module}.{name}"] = torch.empty(0, dtype=torch.float if name == "scale_table" else torch.int32)
                    computed = True
    model = cls.from_state_dict(sd)
    model.update(force=computed)
    return model


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one clean message
        raise CodecError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(obj, dict):
        raise CodecError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    return obj


def embedded_path(family: str, quality: int) -> Path:
    return WEIGHTS_DIR / f"{family}-q{quality}.pt"


def embedded_weights_id(family: str, quality: int) -> str | None:
    """``embedded:<sha256 of the file>``, or None when there is no file."""
    path = embedded_path(family, quality)
    return f"embedded:{file_sha256(path)}" if path.is_file() else None


def load_embedded(family: str, quality: int) -> tuple[CompressionModel, str]:
    """The embedded model of ``family`` at ``quality`` and the id that identifies it.

    The files are made by ``bench train-codec`` and read by ``bench.train_codec.load_codec``,
    which owns the format (see ``bench/codecs/weights/README.md``): ``WEIGHTS_DIR/<family>-
    q<quality>.pt`` holding ``{"config": {"family", "N", "M", "lambda", ...}, "state_dict":
    fp16 parameters + the entropy bottleneck's int32 CDF tables}``. Families are
    ``hyperprior`` (codec ``bmshj2018-hyperprior``), ``mean-scale`` (``mbt2018-mean``) and
    ``gmm`` (``gmm-hyperprior``); all are trained for MSE.
    """
    path = embedded_path(family, quality)
    if not path.is_file():
        present = sorted(p.name for p in WEIGHTS_DIR.glob("*.pt")) if WEIGHTS_DIR.is_dir() else []
        raise CodecError(f"no embedded weights {path.name} in {WEIGHTS_DIR}; present: {', '.join(present) or 'none'}")
    from bench.errors import BenchError
    from bench.train_codec import load_codec

    try:
        model, config = load_codec(path)
    except BenchError as exc:
        raise CodecError(str(exc)) from exc
    if config.get("family") != family:
        raise CodecError(f"{path.name} holds family {config.get('family')!r}, not {family!r}")
    return model, embedded_weights_id(family, quality) or ""


# -- batching -----------------------------------------------------------------------------


def _balanced_chunks(n: int, max_batch: int) -> Iterator[slice]:
    """Slices of ``range(n)`` of near-equal sizes <= ``max_batch`` (so none is 1 when n > 1)."""
    k = -(-n // max_batch)
    start = 0
    for i in range(k):
        size = n // k + (1 if i < n % k else 0)
        yield slice(start, start + size)
        start += size


def _padded(size: int) -> int:
    return -(-size // PAD_MULTIPLE) * PAD_MULTIPLE


def _to_tensor(image: np.ndarray, height: int, width: int) -> Tensor:
    x = torch.tensor(image).permute(2, 0, 1).float().div_(255.0)
    h, w = image.shape[:2]
    return F.pad(x[None], (0, width - w, 0, height - h), mode="replicate")[0] if (h, w) != (height, width) else x


def _to_uint8(x: Tensor, height: int, width: int) -> np.ndarray:
    pixels = x[:, :height, :width].mul(255.0).round_().to(torch.uint8)
    return np.ascontiguousarray(pixels.permute(1, 2, 0).cpu().numpy())


def _groups(keys: Sequence[tuple[Any, ...]]) -> dict[tuple[Any, ...], list[int]]:
    out: dict[tuple[Any, ...], list[int]] = {}
    for i, key in enumerate(keys):
        out.setdefault(key, []).append(i)
    return out


def _pack_symbols(q: Tensor) -> bytes:
    return zlib.compress(q.to(torch.int32).cpu().numpy().astype("<i4").tobytes(), 1)


def _unpack_symbols(blob: bytes, shape: tuple[int, ...]) -> Tensor:
    try:
        values = np.frombuffer(zlib.decompress(blob), dtype="<i4")
    except zlib.error as exc:
        raise CodecError(f"corrupt or foreign stream: latent symbols unreadable ({exc})") from exc
    if values.size != int(np.prod(shape)):
        raise CodecError(f"corrupt or foreign stream: {values.size} latent symbols, expected shape {shape}")
    return torch.from_numpy(values.astype(np.float32)).reshape(shape)


def build_indexes(gc: Any, scales: Tensor) -> Tensor:
    """``GaussianConditional.build_indexes`` in one pass instead of one per table entry.

    CompressAI counts the table entries (all but the last) that are >= the bounded scale
    and subtracts that from the last index; that is the number of entries < the scale,
    which is what ``bucketize`` returns.
    """
    scales = gc.lower_bound_scale(scales)
    return torch.bucketize(scales, gc.scale_table[:-1].to(scales.dtype)).int()


def _bits(likelihoods: Tensor) -> Tensor:
    """Per-image -sum(log2 p)."""
    return -torch.log2(likelihoods).flatten(1).sum(1)


# -- the codecs ---------------------------------------------------------------------------


@dataclass
class _Group:
    """Decoded entropy-coding state of a batch of equal-size streams."""

    y_hat: Tensor
    params: Tensor | None = None  # h_s output
    mixture: tuple[Tensor, Tensor, Tensor] | None = None  # GMM weights, means, scales (B, K, M, h, w)


class CompressAICodec(Codec):
    """A CompressAI image compression model as a bench codec (one subclass per architecture)."""

    kind = "neural"
    version = f"compressai-{_COMPRESSAI_VERSION}+torch-{torch.__version__}"
    quality_meaning = "zoo quality index (higher is better)"
    Params = NeuralParams
    #: The stream header's architecture id (1..127; never reuse one).
    arch_id: ClassVar[int]
    #: How y is coded: "factorized", "scale", "mean-scale", "context" (autoregressive) or
    #: "gmm" (Gaussian mixture, ``bench.codecs.gmm``).
    prior: ClassVar[str]
    #: The model class, in ``compressai.models`` unless ``model_module`` says otherwise.
    model_name: ClassVar[str]
    model_module: ClassVar[str] = "compressai.models"
    #: The family name of the embedded weights (``bench/codecs/weights``), if any.
    embedded_family: ClassVar[str | None] = None

    def __init__(self, params: CodecParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.device = torch.device("cpu")
        #: Most images per transform call; None: 2 on a single CPU thread (where bigger
        #: batches only lose cache locality), else 8. See the module docstring before
        #: going to 16 or more. Not part of the identity: results do not depend on it.
        self.max_batch: int | None = None
        self._models: dict[int, tuple[CompressionModel, str]] = {}
        self._memory = False

    @classmethod
    def from_model(cls, arch: str, model: CompressionModel, quality: int, **params: Any) -> CompressAICodec:
        """A codec around an in-memory model (tests, notebooks); its weights id is the
        sha256 of its state dict. The model is put in eval mode and ``update()``d."""
        codec_cls = _CODECS_BY_NAME[arch]
        if type(model).__name__ != codec_cls.model_name:
            raise CodecError(f"{arch} needs a {codec_cls.model_name}, got {type(model).__name__}")
        codec = codec_cls(**params)
        if (problem := codec.check_quality(quality)) is not None:
            raise CodecError(problem)
        codec._memory = True
        codec._models[quality] = (codec._ready(model), f"memory:{state_dict_sha256(model)}")
        return codec

    @classmethod
    def model_from_state_dict(cls, state: Mapping[str, Any], where: str) -> CompressionModel:
        """The model built from a (CompressAI-style) state dict; N and M read from it."""
        try:
            return _model_from_state_dict(getattr(importlib.import_module(cls.model_module), cls.model_name), state)
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
            raise CodecError(f"{where} does not hold {cls.name} weights: {str(exc).splitlines()[0]}") from exc

    def to(self, device: str | torch.device) -> CompressAICodec:
        """Run the transforms on ``device`` from now on (not part of the identity)."""
        self.device = torch.device(device)
        self._models = {q: (m.to(self.device), wid) for q, (m, wid) in self._models.items()}
        return self

    @property
    def poolable(self) -> bool:
        return self.device.type == "cpu" and self._weights_kind() != "memory"

    @property
    def rate_is_estimate(self) -> bool:
        """True when streams hold a likelihood estimate, not a bitstream (``rate_bits`` then)."""
        return self.params.entropy_estimation

    def rate_bits(self, stream: bytes) -> float:
        """The rate of one stream in bits: ``8 * len(stream)`` for a bitstream, the stored
        likelihood estimate for an estimate container."""
        header, _ = self._parse(stream)
        return header.estimated_bits if header.estimated_bits is not None else 8.0 * len(stream)

    # -- weights --------------------------------------------------------------------------
    def _weights_kind(self) -> str:
        if self._memory:
            return "memory"
        return self.params.weights if self.params.weights in ("zoo", "embedded") else "checkpoint"

    def _checkpoint_path(self, quality: int) -> Path:
        return Path(self.params.weights.replace("{quality}", str(quality))).expanduser()

    def unavailable_reason(self, quality: int | None = None) -> str | None:
        """Why the weights for ``quality`` (None: for any quality) cannot be loaded here,
        checked from files alone: never downloads."""
        if _MISSING is not None:
            return _MISSING
        lo, hi = self.quality_range
        qualities = [quality] if quality is not None else list(range(lo, hi + 1))
        kind = self._weights_kind()
        if kind == "memory":
            return None if any(q in self._models for q in qualities) else f"no in-memory model for quality {quality}"
        if kind == "zoo":
            if self.name not in model_urls:
                return f"{self.name} has no zoo weights: use weights: embedded or a checkpoint path"
            files = self.weight_files(quality)
            if any(f.present for f in files):
                return None
            if quality is not None:
                return files[0].missing(subject="zoo weights not cached")
            return (f"zoo weights not cached: none of the zoo files (e.g. {files[0].path.name} for quality "
                    f"{qualities[0]}) is in {hub_checkpoints_dir()}; {FETCH_HINT}, or place them there "
                    f"(from {files[0].url} and so on)")
        if kind == "embedded":
            if self.embedded_family is None:
                return f"{self.name} has no embedded weights"
            if any(embedded_path(self.embedded_family, q).is_file() for q in qualities):
                return None
            present = sorted(p.name for p in WEIGHTS_DIR.glob("*.pt")) if WEIGHTS_DIR.is_dir() else []
            return (f"no embedded weights {self.embedded_family}-q{qualities[0] if quality else '<quality>'}.pt "
                    f"in {WEIGHTS_DIR} (present: {', '.join(present) or 'none'})")
        if any(self._checkpoint_path(q).is_file() for q in qualities):
            return None
        return f"checkpoint {self._checkpoint_path(qualities[0])} not found"

    def weight_files(self, quality: int | None = None) -> list[WeightFile]:
        """The zoo files of ``quality`` (None: of every quality) with ``weights: zoo``; none
        otherwise (embedded weights ship with bench, a checkpoint is the user's: both are
        checked by ``unavailable_reason``)."""
        if _MISSING is not None or self._weights_kind() != "zoo" or self.name not in model_urls:
            return []
        lo, hi = self.quality_range
        metric = self.params.metric
        embedded = self.embedded_family is not None and metric == "mse"
        instead = f"set weights: to {'embedded or ' if embedded else ''}a checkpoint path"
        return [WeightFile.download(model_urls[self.name][metric][q],
                                    f"{self.name} zoo weights ({metric}, quality {q})", alternative=instead)
                for q in ([quality] if quality is not None else range(lo, hi + 1))]

    def _weights_id(self, quality: int) -> str | None:
        """What identifies the weights for ``quality`` without loading them; None if absent."""
        if quality in self._models:
            return self._models[quality][1]
        kind = self._weights_kind()
        if _MISSING is not None:
            return None
        if kind == "zoo":
            return f"zoo:{zoo_file(self.name, self.params.metric, quality)}" if self.name in model_urls else None
        if kind == "embedded":
            return embedded_weights_id(self.embedded_family, quality) if self.embedded_family else None
        path = self._checkpoint_path(quality)
        return f"sha256:{file_sha256(path)}" if kind == "checkpoint" and path.is_file() else None

    def identity(self) -> dict[str, Any]:
        # The weights themselves, not where they are: a path is no identity, its content is.
        identity = super().identity()
        if self._weights_kind() in ("checkpoint", "memory"):
            identity["params"]["weights"] = self._weights_kind()
        lo, hi = self.quality_range
        identity["weights"] = {str(q): wid for q in range(lo, hi + 1) if (wid := self._weights_id(q))}
        return identity

    def _model(self, quality: int) -> tuple[CompressionModel, str]:
        if _MISSING is not None:
            raise CodecError(f"{self.name}: {_MISSING}")
        if (problem := self.check_quality(quality)) is not None:
            raise CodecError(problem)
        if quality not in self._models:
            kind = self._weights_kind()
            if kind == "memory":
                raise CodecError(f"{self.name}: no in-memory model for quality {quality}")
            if kind == "zoo":
                if self.name not in model_urls:
                    raise CodecError(f"{self.name} has no zoo weights: use weights: embedded or a checkpoint path")
                model, wid = self._load_zoo(quality)
            elif kind == "embedded":
                if self.embedded_family is None:
                    raise CodecError(f"{self.name} has no embedded weights")
                model, wid = load_embedded(self.embedded_family, quality)
            else:
                path = self._checkpoint_path(quality)
                if not path.is_file():
                    raise CodecError(f"{self.name}: checkpoint {path} not found")
                obj = _read_checkpoint(path)
                state = obj["state_dict"] if isinstance(obj.get("state_dict"), dict) else obj
                model, wid = self.model_from_state_dict(state, str(path)), f"sha256:{file_sha256(path)}"
            self._models[quality] = (self._ready(model), wid)
        return self._models[quality]

    def _load_zoo(self, quality: int) -> tuple[CompressionModel, str]:
        metric = self.params.metric
        file = zoo_file(self.name, metric, quality)
        cached = (hub_checkpoints_dir() / file).is_file()
        try:
            zoo_fn = getattr(compressai.zoo, self.name.replace("-", "_"))
            model = zoo_fn(quality=quality, metric=metric, pretrained=True, progress=False)
        except Exception as exc:  # noqa: BLE001 - download and load failures of every kind
            if cached:
                raise CodecError(f"{self.name}: cached zoo weights {hub_checkpoints_dir() / file} cannot be "
                                 f"read ({exc}); delete the file and fetch it again") from exc
            raise CodecError(f"{self.name}: zoo weights could not be downloaded ({exc}); an offline machine needs "
                             f"{file} placed in {hub_checkpoints_dir()} "
                             f"(from {model_urls[self.name][metric][quality]})") from exc
        return model, f"zoo:{file}"

    def _ready(self, model: CompressionModel) -> CompressionModel:
        model.update()  # computes entropy-coder tables only where they are missing
        return model.eval().requires_grad_(False).to(self.device)

    # -- transforms -----------------------------------------------------------------------
    def batch_limit(self) -> int:
        """The most images per transform call, ``max_batch`` or its default."""
        if self.max_batch is not None:
            return self.max_batch
        return 2 if self.device.type == "cpu" and torch.get_num_threads() == 1 else 8

    def _batched(self, fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """``fn`` over ``x`` in chunks of 2..max_batch images: never a batch of one (the
        module docstring says why), so results do not depend on how images were grouped."""
        outs = []
        for part in _balanced_chunks(x.size(0), max(2, self.batch_limit())):
            chunk = x[part]
            outs.append(fn(torch.cat([chunk, chunk]))[:1] if chunk.size(0) == 1 else fn(chunk))
        return torch.cat(outs)

    def _context_params(self, model: CompressionModel, y_hat: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Scales and means of a context model, run in parallel over a known y_hat."""
        ctx = self._batched(model.context_prediction, y_hat)
        scales, means = self._batched(model.entropy_parameters, torch.cat((params, ctx), dim=1)).chunk(2, 1)
        return scales, means

    # -- encode ---------------------------------------------------------------------------
    def encode(self, images: Sequence[np.ndarray], point: OperatingPoint) -> list[bytes]:
        model, weights_id = self._model(point.quality)
        for image in images:  # check the whole batch before any work
            if (problem := rgb8_problem(image)) is not None:
                raise CodecError(f"{self.name}: {problem}")
        streams: list[bytes] = [b""] * len(images)
        sizes = [image.shape[:2] for image in images]
        for (hp, wp), idx in _groups([(_padded(h), _padded(w)) for h, w in sizes]).items():
            x = torch.stack([_to_tensor(images[i], hp, wp) for i in idx]).to(self.device)
            with torch.no_grad():
                coded = self._encode_group(model, x)
            for i, (strings, estimate) in zip(idx, coded):
                header = bitstream.Header(self.arch_id, point.quality, *sizes[i], estimated_bits=estimate)
                streams[i] = bitstream.pack(header, strings, weights_id)
        return streams

    def _encode_group(self, model: CompressionModel, x: Tensor) -> list[tuple[list[bytes], float | None]]:
        estimate = self.params.entropy_estimation
        y = self._batched(model.g_a, x)
        eb = model.entropy_bottleneck
        if self.prior == "factorized":
            if not estimate:
                return [([s], None) for s in eb.compress(y)]
            q = torch.round(y - eb._get_medians().reshape(1, -1, 1, 1))
            return [([_pack_symbols(qi)], float(b)) for qi, b in zip(q, _bits(eb(y, training=False)[1]))]
        z = self._batched(model.h_a, y.abs() if self.prior == "scale" else y)
        z_strings = eb.compress(z)
        z_hat = eb.decompress(z_strings, z.shape[-2:])  # exactly what the decoder will see
        if self.prior == "gmm":
            return self._encode_gmm(model, y, z, z_strings, z_hat)
        params = self._batched(model.h_s, z_hat)
        if estimate:
            y_strings, y_bits = self._estimate_y(model, y, params)
            z_bits = _bits(eb(z, training=False)[1])
            return [([ys, zs], float(yb + zb)) for ys, zs, yb, zb in zip(y_strings, z_strings, y_bits, z_bits)]
        gc = model.gaussian_conditional
        if self.prior == "context":
            y_pad = F.pad(y, (_AR_PADDING,) * 4)
            y_strings = [model._compress_ar(y_pad[i : i + 1], params[i : i + 1], y.size(2), y.size(3),
                                            _AR_KERNEL, _AR_PADDING) for i in range(y.size(0))]
        else:
            scales, means = params.chunk(2, 1) if self.prior == "mean-scale" else (params, None)
            y_strings = gc.compress(y, build_indexes(gc, scales), means=means)
        return [([ys, zs], None) for ys, zs in zip(y_strings, z_strings)]

    def _encode_gmm(self, model: CompressionModel, y: Tensor, z: Tensor, z_strings: list[bytes],
                    z_hat: Tensor) -> list[tuple[list[bytes], float | None]]:
        from bench.codecs.gmm import encode_mixture

        # the model's own per-image h_s, as in its compress(): batch-invariant by construction
        weights, means, scales = model._mixture(z_hat)
        y_q = torch.round(y)
        if self.params.entropy_estimation:
            y_bits = _bits(model.mixture_likelihood(y_q, weights, means, scales))
            z_bits = _bits(model.entropy_bottleneck(z, training=False)[1])
            return [([_pack_symbols(q), zs], float(yb + zb)) for q, zs, yb, zb in zip(y_q, z_strings, y_bits, z_bits)]
        cpu = [t.cpu() for t in (y_q, weights, means, scales)]
        return [([encode_mixture(*(t[i] for t in cpu)), zs], None) for i, zs in enumerate(z_strings)]

    def _estimate_y(self, model: CompressionModel, y: Tensor, params: Tensor) -> tuple[list[bytes], Tensor]:
        """Symbols of y_hat and the bits of y, both as CompressAI's ``forward()`` in eval mode."""
        gc = model.gaussian_conditional
        if self.prior == "context":
            q = torch.round(y)  # forward()'s y_hat; the real coder's round(y - mu) + mu is sequential
            scales, means = self._context_params(model, q, params)
        else:
            scales, means = params.chunk(2, 1) if self.prior == "mean-scale" else (params, None)
            q = gc.quantize(y, "symbols", means)
        return [_pack_symbols(qi) for qi in q], _bits(gc(y, scales, means=means, training=False)[1])

    # -- decode ---------------------------------------------------------------------------
    def _parse(self, stream: bytes) -> tuple[bitstream.Header, list[bytes]]:
        if not isinstance(stream, (bytes, bytearray, memoryview)):
            raise CodecError(f"{self.name}: a stream must be bytes, got {type(stream).__name__}")
        return bitstream.unpack(stream, _STRINGS_PER_ARCH, self._stream_weights_id)

    def _stream_weights_id(self, arch_id: int, quality: int) -> str:
        """The weights id a stream of (arch_id, quality) must carry in its check."""
        if arch_id != self.arch_id:
            raise CodecError(f"corrupt or foreign stream: made by {_CODECS_BY_ID[arch_id].name}, not {self.name}")
        if self.check_quality(quality) is not None:
            raise CodecError(f"corrupt or foreign stream: quality {quality} is outside {self.name}'s range")
        weights_id = self._weights_id(quality)
        if weights_id is None:
            raise CodecError(f"{self.name}: no weights for quality {quality}: {self.unavailable_reason(quality)}")
        return weights_id

    def _entropy_decode(self, model: CompressionModel, items: Sequence[tuple[bitstream.Header, list[bytes]]],
                        hp: int, wp: int, estimate: bool) -> _Group:
        """y_hat (and the hyper-synthesis output) of equal-size streams, without g_s."""
        yh, yw, eb = hp // 16, wp // 16, model.entropy_bottleneck
        y_shape = (model.M, yh, yw)
        try:
            if self.prior == "factorized":
                if estimate:
                    q = torch.stack([_unpack_symbols(s[0], y_shape) for _, s in items]).to(self.device)
                    return _Group(q + eb._get_medians().reshape(1, -1, 1, 1))
                return _Group(eb.decompress([s[0] for _, s in items], (yh, yw)))
            z_hat = eb.decompress([s[1] for _, s in items], (hp // 64, wp // 64))
            if self.prior == "gmm":
                return self._decode_gmm(model, items, z_hat, y_shape, estimate)
            params = self._batched(model.h_s, z_hat)
            if estimate:
                q = torch.stack([_unpack_symbols(s[0], y_shape) for _, s in items]).to(self.device)
                means = params.chunk(2, 1)[1] if self.prior == "mean-scale" else None
                return _Group(q + means if means is not None else q, params)
            gc = model.gaussian_conditional
            if self.prior == "context":
                y_hat = torch.zeros((len(items), model.M, yh + 2 * _AR_PADDING, yw + 2 * _AR_PADDING),
                                    device=z_hat.device)
                for i, (_, strings) in enumerate(items):
                    model._decompress_ar(strings[0], y_hat[i : i + 1], params[i : i + 1], yh, yw,
                                         _AR_KERNEL, _AR_PADDING)
                return _Group(F.pad(y_hat, (-_AR_PADDING,) * 4), params)
            scales, means = params.chunk(2, 1) if self.prior == "mean-scale" else (params, None)
            y_hat = gc.decompress([s[0] for _, s in items], build_indexes(gc, scales), z_hat.dtype, means=means)
            return _Group(y_hat, params)
        except (ValueError, RuntimeError, IndexError) as exc:
            raise CodecError(f"corrupt or foreign stream: entropy decoding failed ({exc})") from exc

    def _decode_gmm(self, model: CompressionModel, items: Sequence[tuple[bitstream.Header, list[bytes]]],
                    z_hat: Tensor, y_shape: tuple[int, int, int], estimate: bool) -> _Group:
        from bench.codecs.gmm import decode_mixture

        mixture = model._mixture(z_hat)
        if estimate:
            y_hat = torch.stack([_unpack_symbols(s[0], y_shape) for _, s in items])
        else:
            cpu = [t.cpu() for t in mixture]
            y_hat = torch.stack([decode_mixture(s[0], *(t[i] for t in cpu)) for i, (_, s) in enumerate(items)])
        return _Group(y_hat.to(self.device), mixture=mixture)

    def _decoded_groups(self, streams: Sequence[bytes]) -> Iterator[tuple[CompressionModel, list[int],
                                                                           list[bitstream.Header], _Group]]:
        parsed = [self._parse(s) for s in streams]  # every stream checked before any decoding
        keys = [(h.quality, _padded(h.height), _padded(h.width), h.estimated_bits is not None) for h, _ in parsed]
        for (quality, hp, wp, estimate), idx in _groups(keys).items():
            model, _ = self._model(quality)
            with torch.no_grad():
                group = self._entropy_decode(model, [parsed[i] for i in idx], hp, wp, estimate)
            yield model, idx, [parsed[i][0] for i in idx], group

    def decode(self, streams: Sequence[bytes]) -> list[np.ndarray]:
        out: list[np.ndarray] = [np.empty(0)] * len(streams)
        for model, idx, headers, group in self._decoded_groups(streams):
            with torch.no_grad():
                x_hat = self._batched(model.g_s, group.y_hat).clamp_(0, 1)
            for k, (i, h) in enumerate(zip(idx, headers)):
                out[i] = _to_uint8(x_hat[k], h.height, h.width)
        return out

    def compression_model(self, quality: int) -> CompressionModel:
        """The CompressAI model at ``quality`` (shared: copy it before changing it)."""
        return self._model(quality)[0]

    def synthesis(self, quality: int) -> torch.nn.Module:
        """The synthesis transform g_s at ``quality`` (the decoder network a compressed-domain
        model skips)."""
        return self._model(quality)[0].g_s

    def latents(self, streams: Sequence[bytes]) -> list[Latents]:
        """Each stream's y_hat with its entropy parameters, by entropy decoding alone."""
        out: list[Latents | None] = [None] * len(streams)
        for model, idx, headers, group in self._decoded_groups(streams):
            scales = means = weights = None
            if group.mixture is not None:
                weights, means, scales = group.mixture
            elif group.params is not None:
                with torch.no_grad():
                    if self.prior == "context":
                        scales, means = self._context_params(model, group.y_hat, group.params)
                    elif self.prior == "mean-scale":
                        scales, means = group.params.chunk(2, 1)
                    else:
                        scales = group.params
            def own(t: Tensor | None, k: int) -> Tensor | None:  # a copy, not a view of the batch
                return None if t is None else t[k].to("cpu", copy=True)

            for k, (i, h) in enumerate(zip(idx, headers)):
                out[i] = Latents(own(group.y_hat, k), own(scales, k), own(means, k), self.name, h.quality,
                                 (h.height, h.width), own(weights, k))
        return out  # type: ignore[return-value]


class BMSHJ2018Factorized(CompressAICodec):
    """Ballé et al. 2018, factorized prior (no hyperprior)."""

    name = "bmshj2018-factorized"
    arch_id, prior, model_name = 1, "factorized", "FactorizedPrior"
    quality_range = (1, 8)


class BMSHJ2018Hyperprior(CompressAICodec):
    """Ballé et al. 2018, scale hyperprior."""

    name = "bmshj2018-hyperprior"
    arch_id, prior, model_name = 2, "scale", "ScaleHyperprior"
    quality_range = (1, 8)
    embedded_family = "hyperprior"


class MBT2018Mean(CompressAICodec):
    """Minnen et al. 2018, mean-scale hyperprior ("M&S")."""

    name = "mbt2018-mean"
    arch_id, prior, model_name = 3, "mean-scale", "MeanScaleHyperprior"
    quality_range = (1, 8)
    embedded_family = "mean-scale"


class MBT2018(CompressAICodec):
    """Minnen et al. 2018, joint autoregressive and hierarchical priors (context model)."""

    name = "mbt2018"
    arch_id, prior, model_name = 4, "context", "JointAutoregressiveHierarchicalPriors"
    quality_range = (1, 8)


class Cheng2020Anchor(CompressAICodec):
    """Cheng et al. 2020 anchor (residual blocks, context model; CompressAI's Gaussian variant)."""

    name = "cheng2020-anchor"
    arch_id, prior, model_name = 5, "context", "Cheng2020Anchor"
    quality_range = (1, 6)


class Cheng2020Attn(CompressAICodec):
    """Cheng et al. 2020 with attention modules (CompressAI's Gaussian variant)."""

    name = "cheng2020-attn"
    arch_id, prior, model_name = 6, "context", "Cheng2020Attention"
    quality_range = (1, 6)


class GMMParams(NeuralParams):
    #: There are no zoo weights for this model.
    weights: str = "embedded"


class GMMHyperprior(CompressAICodec):
    """Mean-scale hyperprior transforms with a 3-component Gaussian mixture per latent
    (``bench.codecs.gmm``); embedded weights (qualities 1..3 ship) or a checkpoint."""

    Params = GMMParams
    name = "gmm-hyperprior"
    arch_id, prior, model_name = 7, "gmm", "GMMHyperprior"
    model_module = "bench.codecs.gmm"
    embedded_family = "gmm"
    quality_range = (1, 3)
    quality_meaning = "index of the trained rate-distortion trade-off (higher is better)"


_ALL: tuple[type[CompressAICodec], ...] = (
    BMSHJ2018Factorized, BMSHJ2018Hyperprior, MBT2018Mean, MBT2018, Cheng2020Anchor, Cheng2020Attn, GMMHyperprior,
)
_CODECS_BY_NAME = {c.name: c for c in _ALL}
_CODECS_BY_ID = {c.arch_id: c for c in _ALL}
_STRINGS_PER_ARCH = {c.arch_id: 1 if c.prior == "factorized" else 2 for c in _ALL}
assert len(_CODECS_BY_ID) == len(_ALL), "architecture ids must be unique"
