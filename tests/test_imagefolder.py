"""The ``imagefolder`` dataset (class folders, split lists, ImageNet's flat val folder with
the devkit's or Kaggle's labels) and classification scored in a pretrained model's classes."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from bench.config import parse_grid
from bench.datasets import DATASETS, ImageSet
from bench.datasets.imagefolder import ImageFolder, read_meta_mat
from bench.datasets.photos import package_files
from bench.errors import BenchError, DatasetError
from bench.grid import resolve
from bench.models.imagenet import imagenet_descriptions, imagenet_synsets
from bench.models.pretrained import EfficientNetLite0
from bench.models.tiny import TinyResNet
from bench.runner import RunOptions, run
from bench.tasks.classification import Classification, ClassLabels

TABBY, ESPRESSO = "n02123045", "n07920052"
#: ILSVRC2012_IDs 1-4 as the real devkit numbers them: its IDs are not the sorted (index) order.
DEVKIT = {1: "n02119789", 2: "n02100735", 3: "n02110185", 4: "n02096294"}


def image(path: Path, seed: int, size: tuple[int, int] = (12, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def tree(root: Path, files: dict[str, int]) -> Path:
    for rel, seed in files.items():
        image(root / rel, seed)
    return root


def load(root: Path, split: str = "val", **params: Any) -> ImageSet:
    return ImageFolder(root=str(root), **params).load(split)


def one_line(exc: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(exc.value)
    return str(exc.value)


# --- class folders ---------------------------------------------------------------------------


def test_class_folders_read_as_torchvision_imagefolder(tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder as TorchImageFolder

    root = tree(tmp_path / "data", {"train/dog/b.png": 1, "train/dog/a.jpg": 2, "train/cat/x/c.png": 3,
                                    "train/cat/d.png": 4, "val/dog/e.png": 5, "val/cat/f.png": 6})
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    ds = ImageFolder(root=str(root))
    assert ds.splits == ("train", "val") and ds.problems() == [] and ds.known_classes() == ("cat", "dog")
    train = ds.load("train")
    assert train.ids == ["train/cat/d.png", "train/cat/x/c.png", "train/dog/a.jpg", "train/dog/b.png"]
    assert train.labels.tolist() == [0, 0, 1, 1] and train.classes == ("cat", "dog")
    theirs = TorchImageFolder(str(root / "train"))
    assert [str(Path(p).relative_to(root)) for p, _ in theirs.samples] == train.ids
    assert [t for _, t in theirs.samples] == train.labels.tolist() and tuple(theirs.classes) == train.classes
    val = ds.load("val")
    assert val.ids == ["val/cat/f.png", "val/dog/e.png"] and val.labels.tolist() == [0, 1]
    assert np.array_equal(val.images[1], np.asarray(Image.open(root / "val/dog/e.png").convert("RGB")))
    subset = ImageFolder(root=str(root), max_images=3).load("train")  # spread: both classes keep a share
    assert subset.ids == [train.ids[0], train.ids[2], train.ids[3]] and subset.labels.tolist() == [0, 1, 1]


def test_split_folders_and_class_order(tmp_path: Path) -> None:
    root = tree(tmp_path / "data", {"val/b/1.png": 1, "val/a/2.png": 2, "train/c/3.png": 3})
    # a class of one split only still has its place in every split's order
    assert load(root).classes == ("a", "b", "c") and load(root).labels.tolist() == [0, 1]
    (tmp_path / "order.txt").write_text("c\nb\na\n")
    assert load(root, classes_file=str(tmp_path / "order.txt")).labels.tolist() == [2, 1]
    flat = tree(tmp_path / "flat", {"b/1.png": 1, "a/2.png": 2})
    assert ImageFolder(root=str(flat), folders={"val": "."}).load("val").ids == ["a/2.png", "b/1.png"]
    only_val = tree(tmp_path / "only", {"val/a/1.png": 1})
    assert ImageFolder(root=str(only_val)).splits == ("val",)


def test_synset_folders_with_imagenet_classes(tmp_path: Path) -> None:
    root = tree(tmp_path / "data", {f"val/{ESPRESSO}/a.png": 1, f"val/{TABBY}/b.png": 2, f"val/{TABBY}/c.png": 3})
    val = load(root, classes="imagenet")
    assert val.classes == imagenet_synsets() and len(val.classes) == 1000
    synsets = imagenet_synsets()
    assert val.ids == [f"val/{TABBY}/b.png", f"val/{TABBY}/c.png", f"val/{ESPRESSO}/a.png"]
    assert val.labels.tolist() == [synsets.index(s) for s in (TABBY, TABBY, ESPRESSO)] == [281, 281, 967]
    renamed = tree(tmp_path / "named", {"val/cat/a.png": 1, "val/espresso/b.png": 2})
    val = load(renamed, classes="imagenet", class_map={"cat": TABBY, "espresso": ESPRESSO})
    assert val.labels.tolist() == [281, 967]
    image(root / "val" / "cat" / "d.png", 4)
    with pytest.raises(DatasetError) as exc:
        load(root, classes="imagenet")
    assert one_line(exc) == f"{root / 'val' / 'cat'}: class 'cat' is not an ImageNet synset (classes: imagenet)"
    assert ImageFolder(root=str(root), classes="imagenet").problems() == [str(exc.value)]


# --- ImageNet validation: the devkit, Kaggle's CSV ----------------------------------------------


def devkit(folder: Path, truth: list[int]) -> Path:
    """An ILSVRC2012 devkit in its structure: ``data/meta.mat`` (the synsets struct array:
    four leaves and one inner node) and the ground-truth file."""
    from scipy.io import savemat

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    rows = [(i, w, f"synset {i}", "a gloss", 0, np.zeros(0, np.uint8), 0, 1300) for i, w in DEVKIT.items()]
    rows.append((5, "n00000005", "an inner node", "a gloss", 2, np.array([1, 2], np.uint8), 1, 2600))
    synsets = np.zeros((len(rows), 1), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        synsets[i, 0] = row
    (folder / "data").mkdir(parents=True)
    savemat(folder / "data" / "meta.mat", {"synsets": synsets})
    (folder / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{t}\n" for t in truth))
    return folder


def val_images(folder: Path, n: int) -> Path:
    for i in range(1, n + 1):
        image(folder / f"ILSVRC2012_val_{i:08d}.JPEG", i)
    return folder


def torchvision_meta(kit: Path) -> dict[int, str]:
    """ILSVRC2012_ID → WordNet id as torchvision's ``parse_devkit_archive.parse_meta_mat``
    reads them (its lines; the function is local to ``parse_devkit_archive``)."""
    from scipy.io import loadmat

    meta = loadmat(kit / "data" / "meta.mat", squeeze_me=True)["synsets"]
    nums_children = list(zip(*meta))[4]
    meta = [meta[idx] for idx, num_children in enumerate(nums_children) if num_children == 0]
    idcs, wnids = list(zip(*meta))[:2]
    return dict(zip(idcs, wnids))


def test_imagenet_val_with_the_devkit(tmp_path: Path) -> None:
    val_images(tmp_path / "ILSVRC2012_img_val", 4)
    kit = devkit(tmp_path / "ILSVRC2012_devkit_t12", [3, 1, 4, 3])
    assert torchvision_meta(kit) == read_meta_mat(kit / "data" / "meta.mat") == DEVKIT
    params = {"folders": {"val": "ILSVRC2012_img_val"}, "labels": {"val": "ILSVRC2012_devkit_t12"}}
    ds = ImageFolder(root=str(tmp_path), **params)
    assert ds.splits == ("val",) and ds.problems() == []
    val = ds.load("val")
    assert val.ids == [f"ILSVRC2012_img_val/ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 5)]
    assert val.classes == (DEVKIT[4], DEVKIT[3], DEVKIT[1])  # the classes present, sorted (ID 2 labels no image)
    assert [val.classes[i] for i in val.labels] == [DEVKIT[3], DEVKIT[1], DEVKIT[4], DEVKIT[3]]
    synsets = imagenet_synsets()
    by_truth_file = load(tmp_path, classes="imagenet", folders={"val": "ILSVRC2012_img_val"},
                         labels={"val": "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"})
    assert by_truth_file.labels.tolist() == [synsets.index(DEVKIT[t]) for t in (3, 1, 4, 3)]

    truth = kit / "data" / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text("3\n1\n4\n")
    with pytest.raises(DatasetError) as exc:
        ds.load("val")
    assert one_line(exc) == f"{truth}: 3 labels for the 4 images in {tmp_path / 'ILSVRC2012_img_val'}"
    truth.write_text("3\n1\n5\n3\n")  # 5 is the inner node: not a class
    with pytest.raises(DatasetError) as exc:
        ds.load("val")
    assert one_line(exc) == f"{truth} line 3: '5' is not an ILSVRC2012_ID of {kit / 'data' / 'meta.mat'} (1..4)"
    truth.write_text("3\n1\n4\n3\n")
    image(tmp_path / "ILSVRC2012_img_val" / "ILSVRC2012_val_00000009.JPEG", 9)
    (tmp_path / "ILSVRC2012_img_val" / "ILSVRC2012_val_00000004.JPEG").unlink()
    with pytest.raises(DatasetError, match=r"ILSVRC2012_val_00000009.JPEG: image number 9 has no line in .* \(1..4\)"):
        ds.load("val")
    (kit / "data" / "meta.mat").unlink()
    assert ds.problems() == [f"{kit / 'data' / 'meta.mat'}: devkit meta.mat not found"]


def test_imagenet_val_with_kaggle_solution(tmp_path: Path) -> None:
    folder = val_images(tmp_path / "ILSVRC" / "Data" / "CLS-LOC" / "val", 3)
    solution = tmp_path / "LOC_val_solution.csv"
    rows = {3: f"{TABBY} 1 2 30 40 {TABBY} 5 6 7 8", 1: f"{ESPRESSO} 10 10 50 50", 2: f"{TABBY} 0 0 9 9"}
    lines = [f"ILSVRC2012_val_{i:08d},{s}\n" for i, s in rows.items()]
    solution.write_text("ImageId,PredictionString\n" + "".join(lines))
    params = {"folders": {"val": "ILSVRC/Data/CLS-LOC/val"}, "labels": {"val": "LOC_val_solution.csv"}}
    val = load(tmp_path, **params)
    assert val.ids == [f"ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3)]
    assert val.classes == (TABBY, ESPRESSO) and val.labels.tolist() == [1, 0, 0]
    assert load(tmp_path, classes="imagenet", **params).labels.tolist() == [967, 281, 281]

    image(folder / "ILSVRC2012_val_00000004.JPEG", 4)
    with pytest.raises(DatasetError) as exc:
        load(tmp_path, **params)
    assert one_line(exc) == f"{folder / 'ILSVRC2012_val_00000004.JPEG'}: image not in {solution}"
    (folder / "ILSVRC2012_val_00000004.JPEG").unlink()
    (folder / "ILSVRC2012_val_00000002.JPEG").unlink()
    with pytest.raises(DatasetError) as exc:
        load(tmp_path, **params)
    assert one_line(exc) == f"{solution} line 4: image ILSVRC2012_val_00000002 is not in {folder}"
    solution.write_text(solution.read_text().replace(ESPRESSO, "n99999999"))
    with pytest.raises(DatasetError) as exc:
        load(tmp_path, **params)
    assert one_line(exc) == f"{solution} line 3: unknown synset 'n99999999' (not an ImageNet-1k class)"
    assert ImageFolder(root=str(tmp_path), **params).problems() == [str(exc.value)]
    solution.write_text("ImageId;PredictionString\n")
    with pytest.raises(DatasetError, match="not a LOC_val_solution.csv"):
        load(tmp_path, **params)


# --- split list files -------------------------------------------------------------------------


def test_split_list_files(tmp_path: Path) -> None:
    root = tree(tmp_path / "minc", {"images/brick/b1.jpg": 1, "images/brick/b2.jpg": 2, "images/carpet/c1.jpg": 3,
                                    "images/carpet/c2.jpg": 4, "misc/odd one.png": 5})
    (root / "labels").mkdir()
    (root / "labels" / "train1.txt").write_text("images/carpet/c1.jpg\nimages/brick/b1.jpg\n\nimages/brick/b2.jpg\n")
    (root / "labels" / "test1.txt").write_text("images/carpet/c2.jpg\nmisc/odd one.png\tbrick\n")
    ds = ImageFolder(root=str(root), lists={"train": "labels/train1.txt", "val": "labels/test1.txt"})
    assert ds.splits == ("train", "val") and ds.problems() == []
    train, val = ds.load("train"), ds.load("val")
    assert train.ids == ["images/carpet/c1.jpg", "images/brick/b1.jpg", "images/brick/b2.jpg"]
    assert train.classes == ("brick", "carpet") and train.labels.tolist() == [1, 0, 0]
    assert val.ids == ["images/carpet/c2.jpg", "misc/odd one.png"] and val.labels.tolist() == [1, 0]

    (root / "classes.txt").write_text("carpet\nwood\n")
    with pytest.raises(DatasetError) as exc:
        ds = ImageFolder(root=str(root), lists={"val": "labels/test1.txt"}, classes_file="classes.txt")
        ds.load("val")
    assert one_line(exc) == (f"{root / 'labels' / 'test1.txt'} line 2: class 'brick' is not in "
                             f"classes_file {root / 'classes.txt'}")
    (root / "labels" / "test1.txt").write_text("images/carpet/c2.jpg\nimages/carpet/c3.jpg\n")
    with pytest.raises(DatasetError) as exc:
        load(root, lists={"val": "labels/test1.txt"})
    assert one_line(exc) == f"{root / 'labels' / 'test1.txt'} line 2: image {root / 'images/carpet/c3.jpg'} not found"
    assert ImageFolder(root=str(root), lists={"val": "labels/nope.txt"}).problems() == [
        f"{root / 'labels' / 'nope.txt'}: list file not found"]


# --- every other bad input: one line naming the culprit -------------------------------------------


def test_bad_folders_and_files_are_one_line_naming_them(tmp_path: Path) -> None:
    root = tree(tmp_path / "data", {"val/cat/a.png": 1, "val/dog/b.png": 2})
    (root / "val" / "fish").mkdir()
    with pytest.raises(DatasetError) as exc:
        load(root)
    assert one_line(exc).startswith(f"{root / 'val' / 'fish'}: empty class folder")
    (root / "val" / "fish").rmdir()
    (tmp_path / "classes.txt").write_text("dog\n")
    with pytest.raises(DatasetError) as exc:
        load(root, classes_file=str(tmp_path / "classes.txt"))
    assert one_line(exc) == f"{root / 'val' / 'cat'}: class 'cat' is not in classes_file {tmp_path / 'classes.txt'}"
    image(root / "val" / "stray.png", 3)
    with pytest.raises(DatasetError, match=r"val: image stray.png is not in a class folder"):
        load(root)
    (root / "val" / "stray.png").unlink()
    with pytest.raises(DatasetError) as exc:
        load(root, class_map={"catt": TABBY})
    assert one_line(exc) == "class_map: 'catt' is not a class of the dataset. Did you mean: cat?"
    with pytest.raises(DatasetError) as exc:
        load(root, class_map={"cat": "dog"})
    assert one_line(exc) == "class_map: 'cat' and 'dog' are both 'dog'"
    (tmp_path / "map.txt").write_text(f"cat: {TABBY}\ndog\n")
    with pytest.raises(DatasetError) as exc:
        load(root, class_map_file=str(tmp_path / "map.txt"))
    assert one_line(exc) == f"{tmp_path / 'map.txt'} line 2: expected 'dataset name: model name'"

    assert ImageFolder(root=str(tmp_path / "nope")).problems() == [f"{tmp_path / 'nope'}: folder not found"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ImageFolder(root=str(empty)).problems()[0].startswith(f"{empty}: no split folders")
    assert ImageFolder(root=str(root), folders={"train": "train", "val": "val"}).problems() == [
        f"{root / 'train'}: folder not found"]
    for bad in ({"folders": {"test": "x"}}, {"lists": {"val": "a"}, "folders": {"val": "v"}},
                {"labels": {"train": "x.csv"}, "folders": {"val": "v"}}, {"classes": "sorted"},
                {"classes": "imagenet", "classes_file": "c.txt"}):
        with pytest.raises(ValidationError):
            ImageFolder(root=str(root), **bad)


def test_a_moved_folder_keeps_its_identity_and_content(tmp_path: Path) -> None:
    root = tree(tmp_path / "a" / "data", {"val/cat/a.png": 1, "val/dog/b.png": 2})
    moved = shutil.copytree(root, tmp_path / "b" / "elsewhere" / "data")
    here, there = ImageFolder(root=str(root)), ImageFolder(root=str(moved))
    assert here.identity() == there.identity() and here.source() != there.source()
    assert "root" in ImageFolder.location_params and DATASETS.get("imagefolder") is ImageFolder
    a, b = here.load("val"), there.load("val")
    assert (a.ids, a.fingerprint, a.targets_fingerprint) == (b.ids, b.fingerprint, b.targets_fingerprint)
    assert here.identity() != ImageFolder(root=str(root), class_map={"cat": TABBY}).identity()
    renamed = ImageFolder(root=str(root), class_map={"cat": TABBY}).load("val")
    assert renamed.classes == ("n02123045", "dog") and renamed.targets_fingerprint != a.targets_fingerprint


# --- classification in the model's classes ----------------------------------------------------


def test_labels_map_to_a_pretrained_models_classes_by_name(tmp_path: Path) -> None:
    task, lite0, tiny = Classification(), EfficientNetLite0(), TinyResNet()
    root = tree(tmp_path / "data", {f"train/{ESPRESSO}/a.png": 1, f"train/{TABBY}/b.png": 2,
                                    f"val/{TABBY}/c.png": 3, f"val/{ESPRESSO}/d.png": 4, f"val/{TABBY}/e.png": 5})
    ds = ImageFolder(root=str(root))
    assert task.problems(ds, lite0) == [] and task.metric_names(ds) == ("top1", "top5")
    val = ds.load("val")
    assert val.classes == (TABBY, ESPRESSO) and val.labels.tolist() == [0, 0, 1]
    refs = ClassLabels(val.labels, agreement=False, classes=val.classes)
    assert refs.for_model(lite0).tolist() == [281, 281, 967] and refs.for_model(None).tolist() == [0, 0, 1]
    assert refs.for_model(tiny).tolist() == [0, 0, 1]  # a network trained here has the dataset's classes
    top5 = [torch.tensor([281, 1, 2, 3, 4]), torch.tensor([5, 281, 6, 7, 8]), torch.tensor([0, 1, 2, 3, 4])]
    assert task.score(top5, refs, lite0) == {"top1": 1 / 3, "top5": 2 / 3}
    own = [torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([0, 1])]  # scenario D: the dataset's classes
    assert task.score(own, refs, None) == {"top1": 1 / 3, "top5": 1.0}
    assert task.training_targets(val, lite0).tolist() == [281, 281, 967]
    assert task.training_targets(val).tolist() == [0, 0, 1]

    image(root / "val" / "cat" / "f.png", 6)
    assert task.problems(ImageFolder(root=str(root)), lite0) == [
        "dataset 'imagefolder': class 'cat' is not one of model 'efficientnet-lite0''s 1000 classes "
        "(n01440764, n01443537, n01484850, ...); classes are matched by name (or renamed by the dataset's class_map)"]
    mapped = ImageFolder(root=str(root), class_map={"cat": "n02123159"})  # tiger cat
    assert task.problems(mapped, lite0) == [] and task.problems(ImageFolder(root=str(root)), tiny) == []
    unmapped = ds.load("val")
    with pytest.raises(BenchError, match="dataset 'imagefolder:data': class 'cat' is not one of model"):
        task.references(None, lite0, unmapped, "cpu")  # a dataset that cannot tell its classes early fails here


# --- end to end: a real pretrained classifier on real photos, labelled by hand ----------------------

#: Real photos shipped in wheels (and two Kodak images) in the ImageNet class a person would
#: file them under, chosen from the class descriptions, not from the model's predictions.
PHOTOS = {
    ("skimage", "data/chelsea.png"): "n02123045",                   # tabby, tabby cat
    ("skimage", "data/coffee.png"): "n07920052",                    # espresso
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"): "n03763968",  # military uniform
    ("skimage", "data/rocket.jpg"): "n03773504",                    # missile (a launcher on its pad)
    ("kodak", "kodim21.png"): "n02814860",                          # beacon, lighthouse
    ("kodak", "kodim23.png"): "n01818515",                          # macaw
}


def photo_folders(root: Path, kodak_dir: Path) -> dict[str, str]:
    """``root/val/<synset>/<photo>``; returns id → synset."""
    truth = {}
    for (package, rel), synset in PHOTOS.items():
        source = kodak_dir / rel if package == "kodak" else package_files([(package, rel)], "photos")[0]
        (root / "val" / synset).mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / "val" / synset / source.name)
        truth[f"val/{synset}/{source.name}"] = synset
    return truth


def expected_scores(images: list[np.ndarray], synsets: list[str]) -> tuple[float, float]:
    """Top-1 and top-5 accuracy of EfficientNet-Lite0 on ``images``, run here directly."""
    model = EfficientNetLite0()
    net = model.build(None).eval()
    with torch.no_grad():
        top5 = net(model.preprocess(images)).topk(5, dim=1).indices
    labels = torch.tensor([imagenet_synsets().index(s) for s in synsets])
    return int((top5[:, 0] == labels).sum()) / len(images), int((top5 == labels[:, None]).any(1).sum()) / len(images)


def jpeg(im: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


@pytest.mark.usefixtures("one_torch_thread")
def test_efficientnet_on_labelled_photos_reports_accuracy(tmp_path: Path, kodak_dir: Path) -> None:
    descriptions = dict(zip(imagenet_synsets(), imagenet_descriptions()))
    assert descriptions[TABBY].startswith("tabby") and descriptions["n02814860"].startswith("beacon, lighthouse")
    truth = photo_folders(tmp_path / "photos", kodak_dir)
    shutil.copytree(tmp_path / "photos", tmp_path / "photos-imagenet")
    experiments = [{"task": "classification", "dataset": {"name": "imagefolder", "root": str(tmp_path / name), **extra},
                    "model": {"name": "efficientnet-lite0"}, "scenarios": ["A", "B"]}
                   for name, extra in (("photos", {}), ("photos-imagenet", {"classes": "imagenet"}))]
    grid = {"name": "labelled", "codecs": [{"codec": "jpeg", "qualities": [10]}], "experiments": experiments}
    summary = run(resolve(parse_grid(grid)), RunOptions(out=tmp_path / "out", workers=1, quiet=True))
    assert summary["status"] == "finished" and summary["cells_run"] == 4

    val = ImageFolder(root=str(tmp_path / "photos")).load("val")
    assert val.ids == sorted(truth, key=lambda i: Path(i).parts)
    originals = list(val.images)
    synsets = [truth[i] for i in val.ids]
    expected = {"A": expected_scores(originals, synsets),
                "B": expected_scores([jpeg(im, 10) for im in originals], synsets)}
    lb = pd.read_csv(tmp_path / "out" / "labelled" / "leaderboard.csv")
    assert set(lb.metric) == {"top1", "top5"} and set(lb.n_images) == {len(PHOTOS)}
    for dataset in ("imagefolder:photos", "imagefolder:photos-imagenet"):
        for scenario, (top1, top5) in expected.items():
            rows = lb[(lb.dataset == dataset) & (lb.scenario == scenario)].set_index("metric").value
            assert (rows["top1"], rows["top5"]) == (top1, top5)
    assert 0 < expected["A"][0] < 1 and expected["A"][1] >= expected["A"][0]  # a real, not a trivial, score
