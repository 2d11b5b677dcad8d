from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "train a small CompressAI codec (hyperprior, mean-scale, gmm) on photos bench never evaluates on"

FAMILIES = ("hyperprior", "mean-scale", "gmm")  # bench.train_codec.FAMILIES, kept import-free here


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", required=True, help=f"model family: {', '.join(FAMILIES)}")
    p.add_argument("--lambda", dest="lmbda", metavar="LAMBDA", type=float, required=True, help="rate–distortion trade-off λ (loss = λ·255²·MSE + bpp)")
    p.add_argument("--out", required=True, help="weights file to write (.pt)")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="train for this many steps")
    budget.add_argument("--minutes", type=float, help="train for this much wall time")
    p.add_argument("--N", type=int, default=64, help="channels of the transforms (default 64)")
    p.add_argument("--M", type=int, default=64, help="latent channels (default 64; N=64, M=64 keeps all nine shipped files under 25 MB)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop", type=int, default=128, help="training crop size, a multiple of 64 (default 128)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate, cosine-decayed to 0 (default 1e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="train the transforms in fp32 instead of bf16 autocast")
    p.add_argument("--log-every", type=int, default=50, help="log every N steps (default 50)")
    p.add_argument("--data", metavar="PATH", nargs="+", default=[], help="train on these image files and folders (searched recursively) instead of the shipped training photos")
    p.add_argument("--short-side", type=int, metavar="PX", help="downscale (Lanczos) each training image whose shorter side is longer than PX")
    p.add_argument("--init", metavar="FILE", help="start from a weights file (same family: all weights; another family: g_a and g_s only)")
    p.add_argument("--evaluate", metavar="DIR", help="after training, compress/decompress the images in DIR and store bpp/PSNR with the weights")


def main(args: argparse.Namespace) -> int:
    from bench.train_codec import TrainConfig, TrainingError, command_line, save_codec, train

    if args.family not in FAMILIES:
        raise TrainingError(f"unknown codec family {args.family!r} (choose from: {', '.join(FAMILIES)})")
    config = TrainConfig(
        family=args.family,
        N=args.N,
        M=args.M,
        lmbda=args.lmbda,
        steps=args.steps,
        minutes=args.minutes,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        seed=args.seed,
        amp=args.amp,
        threads=args.threads,
        log_every=args.log_every,
        init=args.init,
        data_paths=args.data,
        short_side=args.short_side,
    )
    problems = config.problems()
    if problems:
        raise TrainingError("; ".join(problems))
    eval_images = _eval_images(args.evaluate) if args.evaluate else None
    model, summary = train(config)
    out = Path(args.out)
    save_codec(model, config, out, summary, command_line())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)", flush=True)
    if eval_images is not None:
        _evaluate_into(out, eval_images, args.evaluate)
    return 0


def _eval_images(folder: str) -> list:
    from bench.images import load_image
    from bench.train_codec import folder_images

    return [load_image(p) for p in folder_images(folder)]


def _evaluate_into(path: Path, images: list, folder: str) -> None:
    """Evaluate the *saved* file (what ships, fp16 weights and stored tables) and record the
    numbers in its config."""
    import torch

    from bench.train_codec import evaluate, load_codec

    model, _ = load_codec(path)
    result = evaluate(model, images)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    blob["config"]["evaluation"] = {"folder": Path(folder).name, **result}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    print(f"{Path(folder).name}: {result['bpp']:.4f} bpp (mean of per-image), {result['psnr']:.2f} dB PSNR", file=sys.stdout, flush=True)
