"""Training small CompressAI codecs on photos that bench never evaluates on.

The weights that ship in ``bench/codecs/weights/`` were made with this module (the exact
commands are in that folder's README). A weights file is a ``torch.save`` of::

    {"config": {"family", "N", "M", "lambda", "steps", "seed", "data", "command", ...},
     "state_dict": {...}}

The state dict is saved *after* ``model.update(force=True)`` on the fp16-rounded weights,
so it already holds the entropy coder's CDF tables (int32 buffers) that match the shipped
weights exactly: loading needs no ``update()`` and gives the same tables on every machine.
Floating-point tensors are stored as fp16 (they load back into fp32 modules);
:func:`load_codec` does all of this.

Training data are the real photographs in :data:`TRAIN_PHOTOS`; none of them is among the
24 Kodak images or :data:`bench.datasets.photos.SHIPPED_PHOTOS`, which bench evaluates on.
"""

from __future__ import annotations

import math
import random
import shlex
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.errors import BenchError, DatasetError
from bench.images import IMAGE_SUFFIXES, load_image

#: Real photographs shipped in installed wheels that bench does not evaluate on:
#: textures, microscopy, a fundus photo, the moon, a clock, printed text (photographed/scanned).
#: Excluded on purpose: every image in SHIPPED_PHOTOS (evaluation) and the synthetic or
#: graphic ones (color wheel, logos, horse silhouette, chessboards, phantom, binary blobs).
TRAIN_PHOTOS: tuple[tuple[str, str], ...] = (
    ("skimage", "data/brick.png"),
    ("skimage", "data/grass.png"),
    ("skimage", "data/gravel.png"),
    ("skimage", "data/moon.png"),
    ("skimage", "data/cell.png"),
    ("skimage", "data/clock_motion.png"),
    ("skimage", "data/text.png"),
    ("skimage", "data/page.png"),
    ("skimage", "data/ihc.png"),
    ("skimage", "data/retina.jpg"),
)

FAMILIES = ("hyperprior", "mean-scale", "gmm")


class TrainingError(BenchError):
    """Bad training settings (family, sizes, budget) or missing training data."""


@dataclass
class TrainConfig:
    """Everything that determines a training run (all of it is stored with the weights)."""

    family: str = "hyperprior"
    N: int = 64
    M: int = 64
    lmbda: float = 0.0067
    steps: int | None = None
    minutes: float | None = None
    batch_size: int = 4
    crop: int = 128
    lr: float = 1e-3
    aux_lr: float = 1e-3
    clip_max_norm: float = 1.0
    seed: int = 0
    amp: bool = True
    threads: int = 1
    log_every: int = 50
    #: A weights file to start from: all matching parameters when it is of the same family,
    #: else only the analysis and synthesis transforms (g_a, g_s).
    init: str | None = None
    #: Training images: files and folders (searched recursively); TRAIN_PHOTOS when empty.
    data_paths: list[str] = field(default_factory=list)
    #: Downscale (Lanczos) every training image whose shorter side is longer than this.
    short_side: int | None = None
    data: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = []
        if self.family not in FAMILIES:
            out.append(f"unknown codec family {self.family!r} (choose from: {', '.join(FAMILIES)})")
        if self.N < 1 or self.M < 1:
            out.append(f"N and M must be positive, got N={self.N}, M={self.M}")
        if (self.steps is None) == (self.minutes is None):
            out.append("give exactly one budget: --steps or --minutes")
        if self.steps is not None and self.steps < 1:
            out.append(f"--steps must be at least 1, got {self.steps}")
        if self.minutes is not None and self.minutes <= 0:
            out.append(f"--minutes must be positive, got {self.minutes}")
        if self.crop < 64 or self.crop % 64:
            out.append(f"--crop must be a positive multiple of 64, got {self.crop}")
        if self.batch_size < 1 or self.threads < 1 or self.log_every < 1:
            out.append("--batch-size, --threads and --log-every must be at least 1")
        if self.short_side is not None and self.short_side < self.crop:
            out.append(f"--short-side must be at least the crop ({self.crop}), got {self.short_side}")
        if not self.lmbda > 0:
            out.append(f"--lambda must be positive, got {self.lmbda}")
        return out


# -- data ------------------------------------------------------------------------------


def train_photo_paths() -> list[Path]:
    """Paths of :data:`TRAIN_PHOTOS`; a ``DatasetError`` naming what is missing otherwise."""
    from bench.datasets.photos import package_files

    return package_files(TRAIN_PHOTOS, "training photos")


def folder_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; a ``DatasetError`` when none."""
    root = Path(folder).expanduser()
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()) if root.is_dir() else []
    if not files:
        raise DatasetError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in folder")
    return files


def image_paths(paths: Sequence[str | Path]) -> list[Path]:
    """The image files among ``paths`` (files, or folders searched recursively), in the
    order given; a ``DatasetError`` naming the culprit for a missing path or an empty folder."""
    out: list[Path] = []
    for path in paths:
        p = Path(path).expanduser()
        if p.is_dir():
            out += folder_images(p)
        elif p.is_file():
            out.append(p)
        else:
            raise DatasetError(f"{path}: no such file or folder")
    return out


def downscale(image: np.ndarray, short_side: int | None) -> np.ndarray:
    """``image`` resized (Lanczos) so that its shorter side is ``short_side``, when longer."""
    h, w = image.shape[:2]
    if short_side is None or min(h, w) <= short_side:
        return image
    from PIL import Image

    scale = short_side / min(h, w)
    size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def to_tensor(image: np.ndarray) -> Tensor:
    """``(H, W, 3)`` uint8 → ``(3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)


class CropSampler:
    """Random ``crop``×``crop`` patches with flips and a random colour-channel order.

    Most training photos are grayscale (replicated to RGB) and the two colour ones are
    dominated by one hue; permuting channels spreads colour statistics a little wider.
    Images are picked with probability proportional to their area.
    """

    def __init__(self, images: Sequence[Tensor], crop: int, seed: int) -> None:
        small = [tuple(im.shape[1:]) for im in images if min(im.shape[1:]) < crop]
        if small:
            raise DatasetError(f"training images smaller than the {crop}px crop: {small}")
        self.images = list(images)
        self.crop = crop
        self.rng = random.Random(seed)
        self.weights = [im.shape[1] * im.shape[2] for im in self.images]

    def patch(self) -> Tensor:
        im = self.rng.choices(self.images, weights=self.weights)[0]
        _, h, w = im.shape
        top, left = self.rng.randrange(h - self.crop + 1), self.rng.randrange(w - self.crop + 1)
        p = im[:, top : top + self.crop, left : left + self.crop]
        if self.rng.random() < 0.5:
            p = p.flip(2)
        if self.rng.random() < 0.5:
            p = p.flip(1)
        order = list(range(3))
        self.rng.shuffle(order)
        return p[order]

    def batch(self, n: int) -> Tensor:
        return torch.stack([self.patch() for _ in range(n)])


# -- models ----------------------------------------------------------------------------


def build_model(family: str, N: int, M: int) -> nn.Module:
    """A fresh (untrained) CompressAI model of ``family`` with ``N``/``M`` channels."""
    import bench.codecs.neural  # noqa: F401  (imports compressai without its import-time notices)

    if family == "hyperprior":
        from compressai.models import ScaleHyperprior

        return ScaleHyperprior(N, M)
    if family == "mean-scale":
        from compressai.models import MeanScaleHyperprior

        return MeanScaleHyperprior(N, M)
    if family == "gmm":
        from bench.codecs.gmm import GMMHyperprior

        return GMMHyperprior(N, M)
    raise TrainingError(f"unknown codec family {family!r} (choose from: {', '.join(FAMILIES)})")


def _amp(enabled: bool) -> Any:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def rd_forward(model: nn.Module, family: str, x: Tensor, amp: bool) -> dict[str, Any]:
    """The training forward pass, with the four transforms under bf16 autocast when
    ``amp`` and the entropy models always in fp32 (their likelihoods need the precision)."""
    with _amp(amp):
        y = model.g_a(x)
    y = y.float()
    if family == "gmm":
        with _amp(amp):
            z = model.h_a(y)
        z_hat, z_lik = model.entropy_bottleneck(z.float())
        with _amp(amp):
            params = model.h_s(z_hat)
        y_lik = model.mixture_likelihood(model.noisy(y), *model.split_params(params.float()))
        y_hat = model.ste_round(y)
    else:
        with _amp(amp):
            z = model.h_a(torch.abs(y) if family == "hyperprior" else y)
        z_hat, z_lik = model.entropy_bottleneck(z.float())
        with _amp(amp):
            params = model.h_s(z_hat)
        params = params.float()
        if family == "hyperprior":
            y_hat, y_lik = model.gaussian_conditional(y, params)
        else:
            scales, means = params.chunk(2, 1)
            y_hat, y_lik = model.gaussian_conditional(y, scales, means=means)
    with _amp(amp):
        x_hat = model.g_s(y_hat)
    return {"x_hat": x_hat.float(), "likelihoods": {"y": y_lik, "z": z_lik}}


def rd_loss(out: dict[str, Any], x: Tensor, lmbda: float) -> dict[str, Tensor]:
    """CompressAI's rate–distortion loss: ``λ·255²·MSE + bpp`` (bpp estimated from likelihoods)."""
    n, _, h, w = x.shape
    bpp = sum(torch.log(lik).sum() for lik in out["likelihoods"].values()) / (-math.log(2) * n * h * w)
    mse = F.mse_loss(out["x_hat"], x)
    return {"loss": lmbda * 255**2 * mse + bpp, "bpp": bpp, "mse": mse}


def psnr_from_mse(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))


# -- training --------------------------------------------------------------------------


def warm_start(model: nn.Module, family: str, path: str | Path) -> list[str]:
    """Copy parameters from a weights file into ``model``: every one whose name and shape
    match when the file is of ``family``, else only g_a and g_s. Returns the names copied."""
    source, cfg = load_codec(path)
    prefixes = ("",) if cfg["family"] == family else ("g_a.", "g_s.")
    theirs = dict(source.named_parameters())
    copied = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            q = theirs.get(name)
            if name.startswith(prefixes) and q is not None and q.shape == p.shape:
                p.copy_(q)
                copied.append(name)
    if not copied:
        raise TrainingError(f"{path}: no parameter matches a {family} model with these N/M")
    return copied


#: What a history entry keeps of each earlier run.
HISTORY_KEYS = ("family", "lambda", "steps", "seconds", "minutes", "batch_size", "crop", "lr", "init", "data",
                "short_side", "command", "evaluation")


def init_history(path: str | Path) -> list[dict[str, Any]]:
    """The training history of the weights file ``path``: its own earlier runs, then itself."""
    _, cfg = load_codec(path)
    return [*cfg.get("history", []), {k: cfg[k] for k in HISTORY_KEYS if k in cfg}]


def _optimizers(model: nn.Module, lr: float, aux_lr: float) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam for the network, a separate Adam for the entropy bottleneck's quantiles (as in
    CompressAI's examples/train.py)."""
    params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles") and p.requires_grad]
    return torch.optim.Adam(params, lr=lr), torch.optim.Adam(aux, lr=aux_lr)


def _setup(config: TrainConfig, images: Sequence[np.ndarray] | None,
           log: TextIO) -> tuple[CropSampler, nn.Module, list[dict[str, Any]]]:
    """The crop sampler over the training images, the model (warm-started from
    ``config.init`` if given) and the history it carries."""
    problems = config.problems()
    if problems:
        raise TrainingError("; ".join(problems))
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    if images is None:
        paths = image_paths(config.data_paths) if config.data_paths else train_photo_paths()
        config.data = [p.name for p in paths]
        images = [downscale(load_image(p), config.short_side) for p in paths]
    sampler = CropSampler([to_tensor(im) for im in images], config.crop, config.seed)
    model = build_model(config.family, config.N, config.M)
    history: list[dict[str, Any]] = []
    if config.init:
        copied = warm_start(model, config.family, config.init)
        history = init_history(config.init)
        print(f"init: {len(copied)} tensors from {config.init}", file=log, flush=True)
    model.train()
    return sampler, model, history


def _step(model: nn.Module, opt: torch.optim.Optimizer, aux_opt: torch.optim.Optimizer, x: torch.Tensor,
          config: TrainConfig) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One rate–distortion step and one step of the entropy bottleneck's auxiliary loss."""
    opt.zero_grad(set_to_none=True)
    aux_opt.zero_grad(set_to_none=True)
    terms = rd_loss(rd_forward(model, config.family, x, config.amp), x, config.lmbda)
    terms["loss"].backward()
    if config.clip_max_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_max_norm)
    opt.step()
    aux_loss = model.aux_loss()
    aux_loss.backward()
    aux_opt.step()
    return terms, aux_loss


def train(
    config: TrainConfig,
    images: Sequence[np.ndarray] | None = None,
    log: TextIO | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train one model; return it (fp32, not yet updated) and a summary of the run.

    ``images`` defaults to :data:`TRAIN_PHOTOS`. The learning rate follows a cosine from
    ``config.lr`` to 0 over the step budget, or over the time budget with ``minutes``.
    """
    log = log if log is not None else sys.stdout
    sampler, model, history = _setup(config, images, log)
    opt, aux_opt = _optimizers(model, config.lr, config.aux_lr)

    start = time.monotonic()
    budget_s = config.minutes * 60 if config.minutes is not None else None
    step, window = 0, {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
    first_loss = float("nan")
    recent: deque[float] = deque(maxlen=config.log_every)  # the final loss is their mean
    while True:
        elapsed = time.monotonic() - start
        progress = step / config.steps if config.steps is not None else elapsed / budget_s
        if progress >= 1.0:
            break
        for group in opt.param_groups:
            group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * progress))
        terms, aux_loss = _step(model, opt, aux_opt, sampler.batch(config.batch_size), config)
        step += 1
        loss = terms["loss"].item()
        if not math.isfinite(loss):
            raise TrainingError(f"loss became {loss} at step {step}; try a lower --lr")
        if step == 1:
            first_loss = loss
        recent.append(loss)
        for k in ("loss", "bpp", "mse"):
            window[k] += terms[k].item()
        window["n"] += 1
        if step % config.log_every == 0:
            n = window["n"]
            print(
                f"step {step:6d}  {time.monotonic() - start:7.1f}s  lr {opt.param_groups[0]['lr']:.2e}  "
                f"loss {window['loss'] / n:.4f}  bpp~ {window['bpp'] / n:.3f}  "
                f"psnr~ {psnr_from_mse(window['mse'] / n):.2f} dB  aux {aux_loss.item():.1f}",
                file=log,
                flush=True,
            )
            window = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
    last_loss = sum(recent) / len(recent) if recent else float("nan")
    summary = {
        "history": history,
        "steps": step,
        "seconds": round(time.monotonic() - start, 1),
        "first_loss": first_loss,
        "last_loss": last_loss,
    }
    print(f"done: {step} steps in {summary['seconds']} s; loss {first_loss:.4f} -> {last_loss:.4f}", file=log, flush=True)
    return model, summary


# -- weights files ---------------------------------------------------------------------


def finalize(model: nn.Module) -> dict[str, Tensor]:
    """Round the parameters to fp16, rebuild the CDF tables from exactly those weights, and
    return what ships: the parameters (fp16) and the entropy bottleneck's CDF tables (int32).

    Float buffers are constants of the architecture (GDN pedestals, likelihood bounds,
    CompressAI's 64-level scale table); they are left out, as are the GaussianConditional
    tables built from that scale table alone (0.8 MB): :func:`load_codec` takes both from
    the code. (Storing them in fp16 would be wrong: 1e-9 and 2^-36 round to 0 there.)
    """
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    model.update(force=True)
    model.eval()
    params = dict(model.named_parameters())
    out = {}
    for k, v in model.state_dict().items():
        if k in params:
            out[k] = v.detach().half().clone()
        elif not v.is_floating_point() and not k.startswith("gaussian_conditional."):
            out[k] = v.clone()
    return out


def save_codec(model: nn.Module, config: TrainConfig, path: Path, summary: dict[str, Any], command: str) -> None:
    meta = asdict(config)
    meta["lambda"] = meta.pop("lmbda")
    meta["steps"] = summary["steps"]
    # the runs this one continued, oldest first: what a file's weights went through in all
    meta["history"] = summary.get("history", [])
    meta["budget_steps"] = config.steps
    meta.update(
        seconds=summary["seconds"],
        final_loss=summary["last_loss"],
        command=command,
        torch=str(torch.__version__),
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"config": meta, "state_dict": finalize(model)}, tmp)
    tmp.replace(path)


def load_codec(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a weights file written by :func:`save_codec`: an eval-mode fp32 model whose
    CDF tables come from the file (no ``update()`` needed), and its config."""
    try:
        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BenchError(f"{path}: weights file not found") from None
    except Exception as exc:  # a truncated or foreign file
        raise BenchError(f"{path}: not a readable weights file ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(blob, dict) or not {"config", "state_dict"} <= blob.keys():
        raise BenchError(f"{path}: not a bench codec weights file (needs 'config' and 'state_dict')")
    cfg = blob["config"]
    stored = blob["state_dict"]
    model = build_model(cfg["family"], cfg["N"], cfg["M"])
    if hasattr(model, "gaussian_conditional"):
        from compressai.models.base import get_scale_table

        model.gaussian_conditional.update_scale_table(get_scale_table(), force=True)
    params = dict(model.named_parameters())
    state = {}
    for k, own in model.state_dict().items():
        shipped = k in params or (not own.is_floating_point() and not k.startswith("gaussian_conditional."))
        if not shipped:
            state[k] = own  # a constant of the code (see finalize)
        elif k not in stored:
            raise BenchError(f"{path}: weights file lacks {k!r} (made by another version of the {cfg['family']} model?)")
        else:
            state[k] = stored[k].float() if stored[k].is_floating_point() else stored[k]
    model.load_state_dict(state)
    model.eval()
    return model, cfg


# -- evaluation ------------------------------------------------------------------------


def pad_to(x: Tensor, multiple: int = 64) -> Tensor:
    """Replicate-pad the bottom and right edges up to a multiple of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


#: What a minimal container adds to the entropy-coded strings: image height and width
#: (uint16 each) and the length of the first string (uint32). Counted in every bpp here.
HEADER_BYTES = 8


def stream_bytes(out: dict[str, Any]) -> int:
    """Bytes of a one-image ``compress`` output as a stream: its strings plus HEADER_BYTES."""
    return HEADER_BYTES + sum(len(s[0]) for s in out["strings"])


@torch.no_grad()
def evaluate(model: nn.Module, images: Sequence[np.ndarray]) -> dict[str, float]:
    """Real compress/decompress of each image (one at a time, replicate-padded to a
    multiple of 64): the mean of per-image bpp from the bytes (:func:`stream_bytes`) and
    the mean of per-image PSNR (RGB, 8-bit) of the cropped decode."""
    bpps, psnrs = [], []
    for image in images:
        h, w = image.shape[:2]
        x = to_tensor(image).unsqueeze(0)
        out = model.compress(pad_to(x))
        rec = model.decompress(out["strings"], out["shape"])["x_hat"][..., :h, :w]
        rec8 = (rec.clamp(0, 1) * 255).round().squeeze(0).permute(1, 2, 0).numpy().astype(np.uint8)
        mse = float(np.mean((rec8.astype(np.float64) - image.astype(np.float64)) ** 2))
        bpps.append(8 * stream_bytes(out) / (h * w))
        psnrs.append(10 * math.log10(255**2 / max(mse, 1e-12)))
    return {"bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs)), "images": len(images)}


def command_line(argv: Sequence[str] | None = None) -> str:
    return "bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))

