"""Model plugins (classifiers now; detectors and segmenters register here too)."""

from __future__ import annotations

from bench.models.base import Model, validate_model_class
from bench.registry import Registry

MODELS: Registry[type[Model]] = Registry("model", group="bench.models", validate=validate_model_class)
MODELS.register("tiny-resnet", "bench.models.tiny:TinyResNet")
MODELS.register("efficientnet-lite0", "bench.models.pretrained:EfficientNetLite0")
MODELS.register("efficientnet-lite1", "bench.models.pretrained:EfficientNetLite1")
MODELS.register("efficientnet-lite2", "bench.models.pretrained:EfficientNetLite2")
MODELS.register("torchvision", "bench.models.pretrained:TorchvisionClassifier")

__all__ = ["MODELS", "Model"]
MODELS.register("tiny-centernet", "bench.models.detectors:TinyCenterNet")
MODELS.register("torchvision-detector", "bench.models.detectors:TorchvisionDetector")
MODELS.register("tiny-fcn", "bench.models.segmenters:TinyFCN")
MODELS.register("torchvision-segmenter", "bench.models.segmenters:TorchvisionSegmenter")
MODELS.register("mmpretrain", "bench.models.openmmlab:MMPretrainClassifier")
MODELS.register("mmdet", "bench.models.openmmlab:MMDetDetector")
MODELS.register("mmseg", "bench.models.openmmlab:MMSegSegmenter")
