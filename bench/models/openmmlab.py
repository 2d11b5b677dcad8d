"""OpenMMLab backends: MMPretrain classifiers, MMDetection detectors, MMSegmentation
segmenters, each built from an OpenMMLab config and a local checkpoint.

An optional extra (``docs/openmmlab.md``): mmdet and mmseg need mmcv 2.1 with its compiled
ops, built from the sdist by ``scripts/build_mmcv.sh``. Nothing here downloads: a config is a
file, or ``package::path`` inside an installed package's own configs (``mmdet::ddod/
ddod_r50_fpn_1x_coco.py``), and the weights are a local file.

Each network is wrapped in an ``nn.Module`` that speaks the calling convention of its bench
task, so bench's own loops evaluate it (scenarios A and B) and finetune it (scenario C):

- classifier: ``net(x)`` → logits; ``preprocess`` runs the config's test pipeline (resize,
  crop) and the model's data preprocessor normalises;
- detector: ``net(images)`` → ``{"boxes", "scores", "labels"}`` per image in the input's
  pixels (eval), ``net(images, targets)`` → the detector's own losses (train); the config's
  test pipeline (resize) runs inside, on boxes too;
- segmenter: ``net(x)`` → logits over the model's classes at the resized input's size; the
  segmentation task resizes them to the label maps and trains with pixel-wise cross-entropy
  (the decode head's own loss and the auxiliary head are not used).

Checkpoints load weights-only unless the grid marks them ``trusted: true``: OpenMMLab's
released checkpoints carry pickled numpy objects in their ``meta`` (training logs) that
``torch.load(weights_only=True)`` refuses, and unpickling runs code from the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import pickle
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import model_validator
from torch import nn

from bench.errors import BenchError
from bench.models.base import Model, ModelParams
from bench.models.detectors import Detector
from bench.models.segmenters import Segmenter
from bench.weights import WeightFile

#: Where the install recipe is: mmcv's compiled ops have no wheel on PyPI.
INSTALL_HINT = ("see docs/openmmlab.md: build mmcv with scripts/build_mmcv.sh, then "
                "pip install --find-links WHEELHOUSE 'mmcv==2.1.0' 'mmengine==0.10.7' "
                "'mmpretrain==1.2.0' 'mmdet==3.3.0' 'mmsegmentation==1.2.2' ftfy regex 'setuptools==80.9.0' with bench in one pass")


class OpenMMLabParams(ModelParams):
    #: An OpenMMLab config: a ``.py`` file, or ``package::relative/path.py`` inside the
    #: installed package's configs (``mmdet::ddod/ddod_r50_fpn_1x_coco.py``).
    config: str
    #: The weights: a local OpenMMLab checkpoint (``{"state_dict", "meta"}``) or a bare state dict.
    checkpoint: str
    #: Allow the checkpoint to unpickle Python objects (``torch.load(weights_only=False)``):
    #: needed by OpenMMLab's released checkpoints, and only safe for files you trust.
    trusted: bool = False
    #: Names of the network's outputs, in order; default: the checkpoint's ``dataset_meta``,
    #: else the ``METAINFO`` of the config's test dataset.
    classes: tuple[str, ...] | None = None
    #: Config keys to override, mmengine's ``--cfg-options`` (``{"model.test_cfg.score_thr": 0.01}``).
    cfg_options: dict[str, Any] | None = None


class MMPretrainParams(OpenMMLabParams):
    #: Either ``config`` or ``model``: a model name from MMPretrain's model index
    #: (``swin-tiny_16xb64_in1k``), whose config ships in the mmpretrain wheel.
    config: str | None = None
    model: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> MMPretrainParams:
        if (self.config is None) == (self.model is None):
            raise ValueError("give exactly one of config (a config file) and model (an MMPretrain model name)")
        return self


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _rgb_to_bgr(image: np.ndarray) -> np.ndarray:
    """OpenMMLab pipelines expect images as OpenCV reads them (BGR); the data preprocessor
    of a config with ``bgr_to_rgb=True`` turns them back."""
    return np.ascontiguousarray(image[..., ::-1])


def _sync_preprocessor_device(model: nn.Module) -> None:
    """mmengine's data preprocessor moves inputs to the device it was last ``.to()``-ed to;
    a wrapper moved by ``nn.Module.to`` does not tell it, so follow the parameters."""
    pre = getattr(model, "data_preprocessor", None)
    param = next(model.parameters(), None)
    if pre is not None and param is not None and hasattr(pre, "_device"):
        pre._device = param.device


class _OpenMMLab(Model):
    """What the three backends share: finding the packages, the config and the checkpoint,
    loading weights safely, naming classes, running a config's test pipeline."""

    pretrained = True
    Params = OpenMMLabParams
    #: Import name of the OpenMMLab package, its registry scope, and the modules it needs.
    package: ClassVar[str]
    scope: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: ModelParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._classes: tuple[str, ...] | None = None
        self._pipeline: Any = None
        self._identity: dict[str, Any] | None = None

    # -- availability -----------------------------------------------------------------
    @classmethod
    def missing_packages(cls) -> str | None:
        """Why the OpenMMLab packages this backend needs cannot be used here, or None."""
        for module in (cls.package, *cls.needs):
            if importlib.util.find_spec(module.split(".")[0]) is None:
                return f"{module} is not installed ({INSTALL_HINT})"
        for module in (*cls.needs, cls.package):
            try:
                importlib.import_module(module)
            except Exception as exc:  # mmcv without its compiled ops, or built against another torch
                return f"{module} does not import ({exc.__class__.__name__}: {exc}); {INSTALL_HINT}"
        return None

    def unavailable_reason(self) -> str | None:
        if (why := self.missing_packages()) is not None:
            return why
        try:
            self._check_config()
        except BenchError as exc:
            return str(exc)
        if not Path(self.params.checkpoint).is_file():
            return f"checkpoint {self.params.checkpoint} not found"
        return None

    def weight_files(self) -> list[WeightFile]:
        """The local checkpoint: nothing here downloads."""
        return [WeightFile.local(self.params.checkpoint, "checkpoint")]

    def _check_config(self) -> None:
        self._config_path()

    def _require(self) -> None:
        for module in (self.package, *self.needs):
            try:
                importlib.import_module(module)
            except Exception as exc:  # ImportError, or mmcv's ops built against another torch
                raise BenchError(f"{self.name}: {module} does not import ({exc}); {INSTALL_HINT}") from exc

    # -- config -----------------------------------------------------------------------
    def _config_path(self) -> Path:
        spec = self.params.config
        if "::" in spec:  # package::path inside the package's own configs (mim's layout)
            package, rel = spec.split("::", 1)
            found = importlib.util.find_spec(package)
            if found is None or not found.submodule_search_locations:
                raise BenchError(f"config {spec}: package {package!r} is not installed")
            path = Path(next(iter(found.submodule_search_locations))) / ".mim" / "configs" / rel
            if not path.is_file():
                raise BenchError(f"config {spec}: {package} has no config {rel} (looked in {path.parent})")
            return path
        path = Path(spec)
        if not path.is_file():
            raise BenchError(f"config file {spec} not found")
        return path

    def _config(self) -> Any:
        from mmengine.config import Config

        path = self._config_path()
        try:
            cfg = Config.fromfile(str(path))
        except Exception as exc:
            raise BenchError(f"config {self.params.config}: {exc.__class__.__name__}: {exc}") from exc
        if self.params.cfg_options:
            cfg.merge_from_dict(dict(self.params.cfg_options))
        return cfg

    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        from mmengine.registry import DefaultScope

        with DefaultScope.overwrite_default_scope(self.scope):
            yield

    # -- weights ----------------------------------------------------------------------
    def _read_checkpoint(self) -> dict[str, Any]:
        path = Path(self.params.checkpoint)
        if not path.is_file():
            raise BenchError(f"checkpoint {path} not found")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=not self.params.trusted)
        except pickle.UnpicklingError as exc:
            if self.params.trusted:
                raise BenchError(f"checkpoint {path} cannot be read: {exc}") from exc
            try:
                names = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path)[:4])
            except Exception:  # an old or odd format: the message says enough without names
                names = "Python objects"
            raise BenchError(
                f"checkpoint {path} holds pickled {names or 'Python objects'} that weights-only loading refuses; "
                f"if you trust the file, set trusted: true in the model's parameters"
            ) from None
        except Exception as exc:
            raise BenchError(f"checkpoint {path} cannot be read: {exc.__class__.__name__}: {exc}") from exc
        if not isinstance(ckpt, dict):
            raise BenchError(f"checkpoint {path} is a {type(ckpt).__name__}, not a state dict")
        return ckpt

    def _load_weights(self, net: nn.Module, ckpt: dict[str, Any]) -> None:
        """Every parameter and buffer of ``net`` from the checkpoint, shapes checked; extra
        tensors in the file (an EMA copy, heads the config leaves out) are ignored."""
        state = ckpt.get("state_dict", ckpt)
        state = {re.sub(r"^module\.", "", k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
        own = net.state_dict()
        missing = [k for k in own if k not in state]
        wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                 if k in state and state[k].shape != v.shape]
        if missing or wrong:
            detail = (f"{len(missing)} tensors missing (e.g. {', '.join(missing[:3])})" if missing
                      else f"shapes differ: {'; '.join(wrong[:3])}")
            raise BenchError(f"checkpoint {self.params.checkpoint} does not fit config {self.params.config}: {detail}")
        net.load_state_dict({k: state[k] for k in own}, strict=True)

    def _resolve_classes(self, ckpt: dict[str, Any], cfg: Any, count: int | None) -> tuple[str, ...] | None:
        """The network's class names: the grid's, the checkpoint's, or the config's dataset's."""
        if self.params.classes is not None:
            names: Sequence[str] | None = self.params.classes
        else:
            meta = ckpt.get("meta") or {}
            names = (meta.get("dataset_meta") or {}).get("classes") or meta.get("CLASSES")
            if names is None:
                names = self._config_dataset_classes(cfg)
        if names is None:
            return None
        names = tuple(str(n) for n in names)
        if count is not None and len(names) != count:
            raise BenchError(f"{self.name}: the network has {count} classes but {len(names)} class names "
                             f"({', '.join(names[:3])}, ...); set classes: to the network's class names")
        return names

    def _config_dataset_classes(self, cfg: Any) -> Sequence[str] | None:
        try:
            dataset_type = cfg.test_dataloader.dataset.type
            registry = importlib.import_module(f"{self.package}.registry").DATASETS
            with self._scope():
                return registry.get(dataset_type).METAINFO["classes"]
        except Exception:  # no test dataset, or one without METAINFO: the caller says what to set
            return None

    def identity(self) -> dict[str, Any]:
        """Parameters plus the content of the checkpoint and the resolved config: a changed
        file is a new model (new cell keys), whatever its path."""
        if self._identity is None:
            ident = super().identity()
            ckpt = Path(self.params.checkpoint)
            ident["checkpoint_sha256"] = _file_sha256(ckpt) if ckpt.is_file() else None
            try:
                cfg = self._config().to_dict()
                ident["config_sha256"] = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()
            except (BenchError, ImportError):
                ident["config_sha256"] = None
            self._identity = ident
        return self._identity

    # -- pipelines --------------------------------------------------------------------
    def _test_pipeline(self, cfg: Any) -> Any:
        """The config's test pipeline without its loading steps (images come from memory,
        annotations from bench), built in the package's scope."""
        from mmengine.dataset import Compose

        try:
            steps = cfg.test_dataloader.dataset.pipeline
        except AttributeError:
            steps = cfg.get("test_pipeline")
        if not steps:
            raise BenchError(f"config {self.params.config} has no test pipeline (test_dataloader.dataset.pipeline)")
        registry = importlib.import_module(f"{self.package}.registry").TRANSFORMS
        kept = [dict(s) for s in steps if not str(s["type"]).split(".")[-1].startswith("Load")]
        with self._scope():
            return Compose([registry.build(s) for s in kept])

    def _run_pipeline(self, image: np.ndarray, **extra: Any) -> dict[str, Any]:
        h, w = image.shape[:2]
        with self._scope():
            return self._pipeline({"img": _rgb_to_bgr(image), "img_shape": (h, w), "ori_shape": (h, w),
                                   "img_path": None, "img_id": 0, **extra})

    def _stack_pipeline(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """A float batch (BGR, 0..255) of the test pipeline's outputs; they must share a size."""
        if self._pipeline is None:
            self._require()
            self._pipeline = self._test_pipeline(self._config())
        inputs = [self._run_pipeline(im)["inputs"] for im in images]
        if len({tuple(x.shape) for x in inputs}) > 1:
            raise BenchError(f"{self.name}: the test pipeline of {self.params.config} gives images of different sizes "
                             f"({', '.join(sorted({str(tuple(x.shape)) for x in inputs}))}); add a crop or a fixed resize")
        return torch.stack(inputs).float()

    def output_classes(self) -> tuple[str, ...] | None:
        if self._classes is None:
            self._require()
            self._classes = self._resolve_classes(self._read_checkpoint(), self._config(), None)
        return self._classes


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """OpenMMLab's builders warn about what bench does on purpose (no checkpoint given to
    ``init_detector``: the weights are loaded here, weights-only)."""
    with warnings.catch_warnings(record=True):  # record: init_detector resets the filters itself
        warnings.simplefilter("ignore")
        yield


# --- MMPretrain ----------------------------------------------------------------------


class MMPretrainNet(nn.Module):
    """An MMPretrain classifier as ``x (BGR 0..255) -> logits``."""

    def __init__(self, model: nn.Module, scope: str) -> None:
        super().__init__()
        self.model = model
        self.scope = scope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from mmengine.registry import DefaultScope

        _sync_preprocessor_device(self.model)
        with DefaultScope.overwrite_default_scope(self.scope):
            data = self.model.data_preprocessor({"inputs": x, "data_samples": None}, False)
            return self.model(data["inputs"], mode="tensor")


class MMPretrainClassifier(_OpenMMLab):
    """An MMPretrain image classifier (``mmpretrain.get_model``) from a config or a model
    name of MMPretrain's index, with a local checkpoint: the study's Swin-T is
    ``model: swin-tiny_16xb64_in1k``. Its test pipeline (resize, crop) and data
    preprocessor (normalisation) come from the config."""

    name = "mmpretrain"
    version = "1"
    task = "classification"
    description = "MMPretrain classifiers from a config (or model name) and a local checkpoint (optional extra)"
    Params = MMPretrainParams
    package = "mmpretrain"
    scope = "mmpretrain"
    needs = ("mmengine", "mmcv")

    def _check_config(self) -> None:
        if self.params.model is None:
            return super()._check_config()
        from mmpretrain import list_models

        if self.params.model.lower() not in list_models():
            raise BenchError(f"mmpretrain has no model {self.params.model!r} in its model index")

    def _config(self) -> Any:
        if self.params.model is None:
            return super()._config()
        from mmpretrain.apis import ModelHub

        self._check_config()
        cfg = ModelHub.get(self.params.model).config
        if self.params.cfg_options:
            cfg.merge_from_dict(dict(self.params.cfg_options))
        return cfg

    def build(self, num_classes: int | None) -> nn.Module:
        self._require()
        from mmpretrain import get_model

        cfg = self._config()
        ckpt = self._read_checkpoint()
        with self._scope(), _quiet():
            net = get_model(cfg, pretrained=False, device="cpu")
        self._load_weights(net, ckpt)
        head = getattr(getattr(net, "head", None), "num_classes", None)
        self._classes = self._resolve_classes(ckpt, cfg, head)
        self._pipeline = self._test_pipeline(cfg)
        return MMPretrainNet(net, self.scope).eval()

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        return self._stack_pipeline(images)


# --- MMDetection ---------------------------------------------------------------------


class MMDetNet(nn.Module):
    """An MMDetection detector in torchvision's calling convention (``bench.models.detectors``):
    each ``(3, H, W)`` RGB 0..255 image goes through the config's test pipeline (resize,
    with its boxes when training) and the model's data preprocessor."""

    def __init__(self, model: nn.Module, pipeline: Any, scope: str) -> None:
        super().__init__()
        self.model = model
        self.pipeline = pipeline
        self.scope = scope

    def _batch(self, images: Sequence[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None) -> dict[str, Any]:
        inputs, samples = [], []
        for i, im in enumerate(images):
            arr = _rgb_to_bgr(im.detach().round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy())
            h, w = arr.shape[:2]
            results: dict[str, Any] = {"img": arr, "img_shape": (h, w), "ori_shape": (h, w), "img_path": None, "img_id": i}
            if targets is not None:
                boxes, labels = targets[i]["boxes"].detach().cpu().tolist(), targets[i]["labels"].detach().cpu().tolist()
                results["instances"] = [{"bbox": b, "bbox_label": int(c), "ignore_flag": 0} for b, c in zip(boxes, labels)]
            packed = self.pipeline(results)
            inputs.append(packed["inputs"])
            samples.append(packed["data_samples"])
        # training=False: the config's batch augmentations (random resizing) stay off;
        # bench's loop does its own flips.
        return self.model.data_preprocessor({"inputs": inputs, "data_samples": samples}, False)

    def forward(self, images: Sequence[torch.Tensor] | torch.Tensor,
                targets: list[dict[str, torch.Tensor]] | None = None) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        from mmengine.registry import DefaultScope

        _sync_preprocessor_device(self.model)
        with DefaultScope.overwrite_default_scope(self.scope):
            if self.training:
                if targets is None:
                    raise ValueError("an MMDetection detector needs targets in train mode")
                data = self._batch(images, targets)
                losses = self.model.loss(data["inputs"], data["data_samples"])
                # mmengine's parse_losses: the terms named *loss*, lists summed (per-level losses).
                return {k: sum(v) if isinstance(v, (list, tuple)) else v for k, v in losses.items() if "loss" in k}
            with torch.no_grad():
                data = self._batch(images, None)
                results = self.model.predict(data["inputs"], data["data_samples"], rescale=True)
        return [{"boxes": r.pred_instances.bboxes, "scores": r.pred_instances.scores,
                 "labels": r.pred_instances.labels} for r in results]


class MMDetDetector(_OpenMMLab, Detector):
    """An MMDetection 3.x detector (``mmdet.apis.init_detector``) from a config and a local
    checkpoint: the study's DDOD R-50 is ``config: mmdet::ddod/ddod_r50_fpn_1x_coco.py``.
    Images keep their size; the config's test pipeline resizes them (and their boxes, when
    finetuning) and predictions come back in the input's pixels. Labels are the checkpoint's
    classes, matched to the dataset's by name."""

    name = "mmdet"
    version = "1"
    task = "detection"
    description = "MMDetection detectors from a config and a local checkpoint (optional extra, needs mmcv ops)"
    package = "mmdet"
    scope = "mmdet"
    needs = ("mmengine", "mmcv", "mmcv.ops")
    eval_batch = 2  # images are resized by the config (DDOD: 1333x800)

    def build(self, num_classes: int | None) -> nn.Module:
        self._require()
        from mmdet.apis import init_detector

        cfg = self._config()
        ckpt = self._read_checkpoint()
        with self._scope(), _quiet():  # palette given: init_detector does not build the test dataset
            net = init_detector(cfg, checkpoint=None, palette="random", device="cpu")
        self._load_weights(net, ckpt)
        self._classes = self._resolve_classes(ckpt, cfg, _head_classes(net))
        if self._classes is None:
            raise BenchError(f"{self.name}: no class names in checkpoint {self.params.checkpoint} or config "
                             f"{self.params.config}; set classes: to the network's class names")
        # The test pipeline with box loading first, so that its resize scales the training
        # boxes too (test pipelines load boxes after resizing: mmdet evaluates in original pixels).
        from mmdet.datasets.transforms import LoadAnnotations

        self._pipeline = self._test_pipeline(cfg)
        self._pipeline.transforms.insert(0, LoadAnnotations(with_bbox=True))
        return MMDetNet(net, self._pipeline, self.scope).eval()

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB 0..255 at the image's size: the network resizes and normalises."""
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()


def _head_classes(net: nn.Module) -> int | None:
    for head in ("bbox_head", "roi_head.bbox_head", "decode_head", "head"):
        obj: Any = net
        for part in head.split("."):
            obj = getattr(obj, part, None)
        count = getattr(obj, "num_classes", None)
        if isinstance(count, int):
            return count
    return None


# --- MMSegmentation ------------------------------------------------------------------


class MMSegNet(nn.Module):
    """An MMSegmentation segmentor as ``x (BGR 0..255, resized by the test pipeline) ->
    logits (N, C, h, w)``, through the config's inference mode (whole or sliding window)."""

    def __init__(self, model: nn.Module, scope: str) -> None:
        super().__init__()
        self.model = model
        self.scope = scope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from mmengine.registry import DefaultScope
        from mmseg.structures import SegDataSample

        _sync_preprocessor_device(self.model)
        h, w = x.shape[-2:]
        samples = [SegDataSample(metainfo={"img_shape": (h, w), "ori_shape": (h, w)}) for _ in range(len(x))]
        with DefaultScope.overwrite_default_scope(self.scope):
            data = self.model.data_preprocessor({"inputs": list(x), "data_samples": samples}, False)
            metas = [s.metainfo for s in data["data_samples"]]
            logits = self.model.inference(data["inputs"], metas)
        left, right, top, bottom = metas[0].get("padding_size", (0, 0, 0, 0))
        return logits[..., top: logits.shape[-2] - bottom, left: logits.shape[-1] - right]


class MMSegSegmenter(_OpenMMLab, Segmenter):
    """An MMSegmentation 1.x segmentor (``mmseg.apis.init_model``) from a config and a local
    checkpoint: the study's UPerNet Swin-T is ``config: mmseg::swin/swin-tiny-patch4-window7-
    in1k-pre_upernet_8xb2-160k_ade20k-512x512.py``. ``preprocess`` runs the config's test
    pipeline (resize); classes are the checkpoint's, matched to the dataset's by name."""

    name = "mmseg"
    version = "1"
    task = "segmentation"
    description = "MMSegmentation segmentors from a config and a local checkpoint (optional extra, needs mmcv ops)"
    package = "mmseg"
    scope = "mmseg"
    needs = ("mmengine", "mmcv", "mmcv.ops")
    eval_batch = 2

    def build(self, num_classes: int | None) -> nn.Module:
        self._require()
        from mmseg.apis import init_model

        cfg = self._config()
        ckpt = self._read_checkpoint()
        from mmengine.model.utils import revert_sync_batchnorm

        with self._scope(), _quiet():
            # SyncBN (the released configs' norm) as plain BN: one process, CPU or one GPU.
            net = revert_sync_batchnorm(init_model(cfg, checkpoint=None, device="cpu"))
        self._load_weights(net, ckpt)
        self._classes = self._resolve_classes(ckpt, cfg, _head_classes(net))
        if self._classes is None:
            raise BenchError(f"{self.name}: no class names in checkpoint {self.params.checkpoint} or config "
                             f"{self.params.config}; set classes: to the network's class names")
        self._pipeline = self._test_pipeline(cfg)
        return MMSegNet(net, self.scope).eval()

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        return self._stack_pipeline(images)
