"""One registry mechanism: names, near misses, lazy entries and entry-point plugins."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

import bench.registry as registry_module
from bench.codecs import CODECS
from bench.codecs.base import validate_codec_class
from bench.errors import BenchError, UnknownNameError
from bench.models import MODELS
from bench.registry import Registry
from bench.scenarios import SCENARIOS
from bench.tasks import TASKS


def test_unknown_name_suggests_the_near_miss() -> None:
    with pytest.raises(UnknownNameError, match=r"Unknown codec 'jpg'\. Did you mean: jpeg\?"):
        CODECS.get("jpg")


def test_duplicate_registration_is_an_error() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)


def test_lazy_entries_resolve_to_checked_classes() -> None:
    for name in CODECS.names():
        validate_codec_class(name, CODECS.get(name))
    assert {"jpeg", "webp", "avif", "heic", "bpg"} <= set(CODECS.names())
    assert "classification" in TASKS.names()
    assert {"A", "B", "C"} <= set(SCENARIOS.names())
    assert {"tiny-resnet", "efficientnet-lite0"} <= set(MODELS.names())


def _fake_entry_points(value: str):
    def entry_points(group: str):  # noqa: ANN202
        return [EntryPoint(name="thirdparty", value=value, group=group)]
    return entry_points


def test_entry_point_plugin_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "entry_points", _fake_entry_points("bench.codecs.pillow:WebP"))
    reg = Registry("codec", group="bench.codecs", validate=validate_codec_class)
    assert reg.names() == ["thirdparty"]
    assert reg.get("thirdparty").name == "webp"


def test_a_bad_plugin_is_rejected_when_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "entry_points", _fake_entry_points("bench.errors:BenchError"))
    reg = Registry("codec", group="bench.codecs", validate=validate_codec_class)
    with pytest.raises(BenchError, match=r"plugin 'thirdparty' .* is not a valid codec"):
        reg.names()


def test_ls_models_says_when_an_optional_backend_lacks_its_packages(monkeypatch, capsys) -> None:
    from bench.cli import main
    from bench.models import MODELS

    monkeypatch.setattr(MODELS.get("mmdet"), "package", "mmdet_not_installed_here")
    assert main(["ls", "models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "unavailable: mmdet_not_installed_here is not installed (see docs/openmmlab.md" in lines["mmdet"]
    assert lines["tiny-resnet"].split()[1] == "ok"
