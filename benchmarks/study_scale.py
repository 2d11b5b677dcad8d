"""Does a run scale like the study needs? An ImageNet-layout folder (class folders named by
WordNet ids, JPEGs of a few hundred pixels) is generated deterministically, and the same
grid — A from scratch, B and C on JPEG — runs at 1× and 10× the training images. Printed:

- peak memory of the whole run (the ``bench`` process and every worker it starts; summed
  proportional set size, so pages shared after a fork count once), 10× against 1×
  (goal ≤ 1.2×);
- the transcode cache's bytes per image against the bitstreams' bytes per image
  (goal ≤ 1.1× + 1 kB);
- scenario C's finetuning throughput (images/s over its epochs, as the run reports the
  training) against a bare torchvision ``ImageFolder`` + ``DataLoader`` loop over the same
  JPEG bytes written out as files, with the same decoding, flips, network, optimiser,
  batch size and workers (goal ≥ 0.9×).

Run: ``.venv/bin/python benchmarks/study_scale.py [--scale 1000] [--workdir DIR]``. It takes
about 10 minutes on 2 cores; figures move by tens of percent from hour to hour, so compare
the ratios of one run, not figures of different runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import yaml
from PIL import Image, ImageDraw

SIZE = (192, 144)  # width × height of every generated image
CLASSES = 20
VAL = 200
WORKERS = 2
QUALITY = 10
SCHEDULE = {"epochs": 1, "batch_size": 32, "lr": 0.003}
WIDTHS = [16, 32, 64]


def synsets() -> list[str]:
    from bench.models.imagenet import imagenet_synsets

    every = imagenet_synsets()
    return [every[i] for i in np.linspace(0, len(every) - 1, CLASSES).round().astype(int)]


def draw(rng: np.random.Generator, label: int) -> Image.Image:
    """A scene whose class is its shape's colour and count: learnable, and JPEG-like in content."""
    w, h = SIZE
    base = rng.integers(0, 256, 3)
    noise = rng.normal(0, 12, (h, w, 3))
    ramp = np.linspace(0, 60, w)[None, :, None]
    img = Image.fromarray(np.clip(base + noise + ramp, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    hue = np.array([(label * 73) % 256, (label * 151) % 256, (label * 29) % 256])
    for _ in range(1 + label % 4):
        x, y = rng.integers(0, w - 40), rng.integers(0, h - 40)
        s = rng.integers(20, 40)
        d.ellipse((x, y, x + s, y + s), fill=tuple(int(v) for v in hue))
    return img


def make_folder(root: Path, n_train: int) -> Path:
    """``root/{train,val}/<synset>/<synset>_<i>.JPEG``, the same bytes for the same arguments."""
    if (root / ".done").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    names = synsets()
    for split, n, seed in (("train", n_train, 1), ("val", VAL, 2)):
        rng = np.random.default_rng(seed)
        for i in range(n):
            label = i % CLASSES
            folder = root / split / names[label]
            folder.mkdir(parents=True, exist_ok=True)
            draw(rng, label).save(folder / f"{names[label]}_{i:06d}.JPEG", quality=90)
    (root / ".done").write_text("")
    return root


def grid(folder: Path, name: str) -> dict:
    return {"name": name, "seed": 0, "codecs": [{"codec": "jpeg", "qualities": [QUALITY]}],
            "experiments": [{"task": "classification", "dataset": {"name": "imagefolder", "root": str(folder)},
                             "model": {"name": "tiny-resnet", "widths": WIDTHS}, "scenarios": ["A", "B", "C"],
                             "train": SCHEDULE, "finetune": SCHEDULE}]}


def _tree_pss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def run_bench(grid_file: Path, out: Path) -> dict:
    """``bench run`` in a process of its own: wall time, peak memory of its tree, its messages."""
    exe = Path(sys.executable).parent / "bench"
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(exe), "run", "--grid", str(grid_file), "--out", str(out), "--workers", str(WORKERS),
                             "--device", "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                peak[0] = max(peak[0], _tree_pss(ps))
            except psutil.NoSuchProcess:
                return
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise SystemExit(f"bench run failed:\n{err[-3000:]}")
    sampler.join()
    return {"wall_s": time.perf_counter() - t0, "peak_pss": peak[0], "stderr": err}


def cache_bytes(cache: Path) -> tuple[int, int, int]:
    """(bytes of every transcode entry, bytes of their bitstreams, images) in ``cache``."""
    import json

    total = streams = images = 0
    for entry in (cache / "transcode").glob("*/*"):
        for f in entry.iterdir():
            total += f.stat().st_size
        streams += (entry / "streams.bin").stat().st_size
        images += len(json.loads((entry / "meta.json").read_text())["offsets"]) - 1
    return total, streams, images


def c_throughput(stderr: str, n_train: int) -> float:
    """Scenario C's finetuning images/s from the run's own report of it (its second training)."""
    times = [float(t) for t in re.findall(rf"trained tiny-resnet on {n_train} images in ([\d.]+) s", stderr)]
    if len(times) < 2:
        raise SystemExit(f"the run reported {len(times)} trainings on {n_train} images, not A and C:\n{stderr[-2000:]}")
    return n_train * SCHEDULE["epochs"] / times[-1]


def bare_loop(cache: Path, folder: Path, work: Path, n_train: int) -> float:
    """images/s of torchvision's ImageFolder + DataLoader over the cached JPEG streams of
    the train split written out as files: Pillow decoding, a random flip, the same network,
    optimiser, batch size and workers as the run's finetuning."""
    import json

    import torch
    import torch.nn.functional as F
    from torchvision import datasets, transforms

    from bench.config import Schedule
    from bench.models.tiny import TinyResNet
    from bench.train import optimizer_for

    [entry] = [e for e in (cache / "transcode").glob("*/*")
               if json.loads((e / "meta.json").read_text())["info"]["split"] == "train"]
    meta = json.loads((entry / "meta.json").read_text())
    blob = (entry / "streams.bin").read_bytes()
    files = work / "bare"
    shutil.rmtree(files, ignore_errors=True)
    for i, rel in enumerate(meta["info"]["ids"]):
        path = files / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob[meta["offsets"][i] : meta["offsets"][i + 1]])
    to_input = transforms.Compose([transforms.PILToTensor(), transforms.RandomHorizontalFlip(),
                                   transforms.Lambda(lambda x: x.float().div_(127.5).sub_(1.0))])
    data = datasets.ImageFolder(str(files), transform=to_input, loader=lambda p: Image.open(p).convert("RGB"))
    assert len(data) == n_train
    schedule = Schedule(**SCHEDULE)
    torch.manual_seed(0)
    model = TinyResNet(widths=WIDTHS)
    net = model.build(len(data.classes))
    opt, sched = optimizer_for(net, schedule, len(data))
    loader = torch.utils.data.DataLoader(data, batch_size=schedule.batch_size, shuffle=True, num_workers=WORKERS,
                                         generator=torch.Generator().manual_seed(0))
    net.train()
    t0 = time.perf_counter()
    for _ in range(schedule.epochs):
        for x, y in loader:
            loss = F.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return n_train * schedule.epochs / (time.perf_counter() - t0)


def measure(work: Path, n_train: int) -> dict:
    folder = make_folder(work / f"imagenet-{n_train}", n_train)
    name = f"scale{n_train}"
    grid_file = work / f"{name}.yaml"
    grid_file.write_text(yaml.safe_dump(grid(folder, name)))
    out = work / f"out-{n_train}"
    shutil.rmtree(out, ignore_errors=True)
    run = run_bench(grid_file, out)
    total, streams, images = cache_bytes(out / "cache")
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    return {"n_train": n_train, "wall_s": run["wall_s"], "peak_mb": run["peak_pss"] / 1e6, "cache_per_image": total / images,
            "streams_per_image": streams / images, "c_images_s": c_throughput(run["stderr"], n_train),
            "bare_images_s": bare_loop(out / "cache", folder, work, n_train), "threads": threads}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=1000, help="training images at 1× (10× is ten times that)")
    ap.add_argument("--workdir", type=Path, default=Path("benchmarks/.study_scale"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    small, large = measure(args.workdir, args.scale), measure(args.workdir, 10 * args.scale)
    for m in (small, large):
        print(f"{m['n_train']:>6} train images: run {m['wall_s']:.0f} s, peak memory {m['peak_mb']:.0f} MB, "
              f"cache {m['cache_per_image']:.0f} B/image for streams of {m['streams_per_image']:.0f} B/image, "
              f"C finetune {m['c_images_s']:.0f} images/s, bare ImageFolder loop {m['bare_images_s']:.0f} images/s")
    goal_cache = max(m["cache_per_image"] / (1.1 * m["streams_per_image"] + 1000) for m in (small, large))
    print(f"peak memory 10x / 1x: {large['peak_mb'] / small['peak_mb']:.2f}x (goal <= 1.2x)")
    for m in (small, large):
        print(f"cache / bitstreams at {m['n_train']}: {m['cache_per_image'] / m['streams_per_image']:.3f}x "
              f"(+{m['cache_per_image'] - m['streams_per_image']:.0f} B/image; goal <= 1.1x + 1 kB: "
              f"{'met' if goal_cache <= 1 else 'not met'})")
        print(f"C finetune / bare loop at {m['n_train']}: {m['c_images_s'] / m['bare_images_s']:.2f}x (goal >= 0.9x)")


if __name__ == "__main__":
    main()
