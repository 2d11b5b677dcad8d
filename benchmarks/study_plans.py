"""``bench plan`` for the study's example grids (examples/study/) on this machine, without
the real datasets or weights: each grid runs on a generated stand-in in the dataset's real
layout (an ImageNet class-folder tree, a COCO instances JSON with its images, ADE20K's
image and label-PNG folders with its 150 class names) at the real image sizes, and each
model on random weights of its architecture (the plan times the architecture; it never
scores). The CompressAI zoo codec is swapped for the embedded weights of the same
architecture (the zoo files are not here). The plans' counts and bytes are the stand-ins';
the per-image figures (bpp, ms per image) are what scales to the full sets.

Run: ``.venv/bin/python benchmarks/study_plans.py [--workdir DIR]`` (about 10 minutes on
2 cores: the probes train each network for a few batches on the CPU).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"coco": (640, 480), "ade20k": (683, 512)}  # the sets' typical image sizes
COUNTS = {"val": 100, "train": 400}


def _scene(rng: np.random.Generator, size: tuple[int, int]) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    d, boxes = ImageDraw.Draw(img), []
    for _ in range(rng.integers(1, 6)):
        x, y = int(rng.integers(0, size[0] - 80)), int(rng.integers(0, size[1] - 80))
        w, h = int(rng.integers(20, 80)), int(rng.integers(20, 80))
        d.rectangle((x, y, x + w, y + h), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        boxes.append((x, y, w, h))
    return img, boxes


def coco(work: Path) -> dict:
    from torchvision.models import get_model_weights

    names = [c for c in get_model_weights("fasterrcnn_resnet50_fpn_v2")["COCO_V1"].meta["categories"]
             if c not in ("__background__", "N/A")]
    rng = np.random.default_rng(0)
    paths = {}
    for split, n in COUNTS.items():
        folder = work / "coco" / f"{split}2017"
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            img, boxes = _scene(rng, SIZES["coco"])
            img.save(folder / f"{i:012d}.jpg", quality=90)
            images.append({"id": i + 1, "file_name": f"{i:012d}.jpg", "width": SIZES["coco"][0], "height": SIZES["coco"][1]})
            annotations += [{"id": len(annotations) + k + 1, "image_id": i + 1, "category_id": int(rng.integers(1, 81)),
                             "bbox": list(b), "area": b[2] * b[3], "iscrowd": 0} for k, b in enumerate(boxes)]
        ann = work / "coco" / f"instances_{split}2017.json"
        ann.write_text(json.dumps({"images": images, "annotations": annotations,
                                   "categories": [{"id": k + 1, "name": c} for k, c in enumerate(names)]}))
        paths[split] = (folder, ann)
    return {"name": "coco", "images": str(paths["val"][0]), "annotations": str(paths["val"][1]),
            "train_images": str(paths["train"][0]), "train_annotations": str(paths["train"][1])}


def ade20k(work: Path) -> dict:
    rng = np.random.default_rng(1)
    base = work / "ADEChallengeData2016"
    dirs = {}
    for split, folder in (("val", "validation"), ("train", "training")):
        images, labels = base / "images" / folder, base / "annotations" / folder
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for i in range(COUNTS[split]):
            img, boxes = _scene(rng, SIZES["ade20k"])
            img.save(images / f"ADE_{split}_{i:08d}.jpg", quality=90)
            label = np.zeros((SIZES["ade20k"][1], SIZES["ade20k"][0]), np.uint8)
            for x, y, w, h in boxes:
                label[y : y + h, x : x + w] = rng.integers(1, 151)
            Image.fromarray(label).save(labels / f"ADE_{split}_{i:08d}.png")
        dirs[split] = (images, labels)
    names = base / "objectInfo150.names"
    names.write_text("\n".join(f"class{k:03d}" for k in range(150)) + "\n")
    return {"name": "labelpng", "images": str(dirs["val"][0]), "labels": str(dirs["val"][1]),
            "train_images": str(dirs["train"][0]), "train_labels": str(dirs["train"][1]),
            "classes_file": str(names), "label_offset": -1}


def imagenet(work: Path) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from study_scale import make_folder

    folder = make_folder(work / "imagenet", COUNTS["train"] * 5)
    return {"name": "imagefolder", "root": str(folder), "classes": "imagenet"}


def random_weights(work: Path, grid: dict) -> None:
    """Each model of ``grid`` on random weights of its architecture, as a local checkpoint."""
    import torch

    for exp in grid["experiments"]:
        model = exp["model"]
        if model["name"] == "torchvision-detector":
            from torchvision.models import get_model

            path = work / f"{model['arch']}-random.pth"
            if not path.is_file():
                torch.manual_seed(0)
                torch.save(get_model(model["arch"], weights=None, weights_backbone=None, num_classes=91).state_dict(), path)
            model["checkpoint"] = str(path)
        elif model["name"] == "mmseg":
            from bench.models.openmmlab import MMSegSegmenter

            from mmengine.model.utils import revert_sync_batchnorm
            from mmseg.apis import init_model

            path = work / "upernet-random.pth"
            if not path.is_file():
                seg = MMSegSegmenter(config=model["config"], checkpoint=str(path))
                torch.manual_seed(0)
                with seg._scope():
                    net = revert_sync_batchnorm(init_model(seg._config(), checkpoint=None, device="cpu"))
                torch.save(net.state_dict(), path)
            model.update(checkpoint=str(path), trusted=False, classes=[f"class{k:03d}" for k in range(150)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".study_plans")
    ap.add_argument("--sample", type=int, default=4)
    ap.add_argument("--only", choices=("imagenet", "coco", "ade20k"), default=None, help="one grid only")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    for name, make in (("imagenet", imagenet), ("coco", coco), ("ade20k", ade20k)):
        if args.only not in (None, name):
            continue
        grid = yaml.safe_load((ROOT / "examples" / "study" / f"{name}.yaml").read_text())
        dataset = grid["experiments"][0]["dataset"]
        keep = {k: v for k, v in dataset.items() if k == "max_images"}
        grid["experiments"][0]["dataset"] = {**make(args.workdir), **keep}
        for codec in grid["codecs"]:
            if codec.get("weights") == "zoo":
                codec.update(weights="embedded", qualities=[q for q in codec["qualities"] if q <= 6])
        random_weights(args.workdir, grid)
        path = args.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(grid, sort_keys=False))
        print(f"$ bench plan --grid examples/study/{name}.yaml   # on the stand-in: {path}", flush=True)
        subprocess.run([str(Path(sys.executable).parent / "bench"), "plan", "--grid", str(path), "--out",
                        str(args.workdir / "out"), "--device", "cpu", "--sample", str(args.sample)], check=True)
        print(flush=True)


if __name__ == "__main__":
    main()
