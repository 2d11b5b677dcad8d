"""ImageNet-1k's classes in the standard index order (the sorted WordNet ids that
torchvision, timm and mmpretrain models are trained with), from timm's copy of the list."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 WordNet ids (``n01440764``, ...) in the models' output order."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())


@lru_cache(maxsize=1)
def imagenet_descriptions() -> tuple[str, ...]:
    """The 1000 human-readable class names (``tench, Tinca tinca``, ...), in the same order."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))
