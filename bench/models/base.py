"""Model plugins: how to build a network and how to turn images into its input."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, model_validator
from torch import nn

from bench.weights import WeightFile, missing_weights


class ModelParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _home(cls, data: Any) -> Any:
        """``~`` in a ``checkpoint`` or ``config`` path is the user's home, as in a dataset's paths."""
        if isinstance(data, dict):
            data = {k: os.path.expanduser(v) if k in ("checkpoint", "config") and isinstance(v, str)
                    and v.startswith("~") else v for k, v in data.items()}
        return data


class Model(ABC):
    """A model backend for one task.

    ``pretrained`` models are scenario A as they come (no training schedule); the others
    are trained from scratch on the dataset's train split with the grid's ``train``.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    task: ClassVar[str]
    pretrained: ClassVar[bool] = False
    description: ClassVar[str] = ""
    Params: ClassVar[type[ModelParams]] = ModelParams

    def __init__(self, params: ModelParams | None = None, **kwargs: Any) -> None:
        self.params = params if params is not None else self.Params(**kwargs)

    def unavailable_reason(self) -> str | None:
        """Why this model cannot be built here (missing weights or package), or None; checked
        from files alone, never downloads. By default: the first of ``weight_files`` missing."""
        return missing_weights(self.weight_files())

    def weight_files(self) -> list[WeightFile]:
        """Every weight file ``build`` reads or downloads (``bench fetch`` downloads the
        missing ones); none by default."""
        return []

    @abstractmethod
    def build(self, num_classes: int | None) -> nn.Module:
        """The network, with its pretrained weights loaded where it has them."""

    @abstractmethod
    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """A float batch ``(N, 3, H, W)`` for the network, from RGB uint8 images."""

    def identity(self) -> dict[str, Any]:
        return {"model": self.name, "version": self.version, "params": self.params.model_dump(mode="json")}


def validate_model_class(name: str, obj: object) -> None:
    """Registry check: a complete ``Model`` subclass called like one, registered under its ``name``."""
    from bench.registry import PluginKind

    PluginKind(Model, {"name": str, "version": str, "task": str})(name, obj)
