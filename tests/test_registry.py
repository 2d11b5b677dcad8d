"""One registry mechanism: names, near misses, lazy entries and entry-point plugins."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import bench.registry as registry_module
from bench.codecs import CODECS
from bench.codecs.base import Codec, validate_codec_class
from bench.datasets import DATASETS
from bench.errors import BenchError, BrokenPluginError, DuplicatePluginError, PluginError, UnknownNameError
from bench.models import MODELS
from bench.registry import Registry
from bench.scenarios import SCENARIOS
from bench.tasks import TASKS
from tests.test_plugins import write_distribution


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


def _fake_entry_points(value: str, name: str = "thirdparty"):
    def entry_points(group: str):  # noqa: ANN202
        return [EntryPoint(name=name, value=value, group=group)]
    return entry_points


def test_entry_point_plugin_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "entry_points", _fake_entry_points("bench.codecs.pillow:WebP", "webp"))
    reg = Registry("codec", group="bench.codecs", validate=validate_codec_class)
    assert reg.names() == ["webp"]
    assert reg.get("webp").name == "webp"


def test_a_bad_plugin_is_rejected_when_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "entry_points", _fake_entry_points("bench.errors:BenchError"))
    reg = Registry("codec", group="bench.codecs", validate=validate_codec_class)
    assert reg.names() == ["thirdparty"]  # listed, and only its own name fails
    assert reg.broken() == {"thirdparty": "<class 'bench.errors.BenchError'> is not a subclass of bench.codecs.base.Codec"}
    with pytest.raises(BrokenPluginError, match=r"^codec 'thirdparty' from an unnamed distribution .* cannot be used"):
        reg.get("thirdparty")


# -- one validator for every kind ---------------------------------------------------------------

ALL = [(reg, name) for reg in (CODECS, TASKS, MODELS, DATASETS, SCENARIOS) for name in reg.names()
       if name not in reg.broken()]


@pytest.mark.parametrize("registry, name", ALL, ids=[f"{r.kind}-{n}" for r, n in ALL])
def test_every_registered_plugin_passes_its_kinds_validator(registry: Registry, name: str) -> None:
    cls = registry.get(name)
    registry._validate(name, cls)
    assert cls.name == name


def _codec(**methods: object) -> type:
    attrs = {"__module__": __name__, "name": "c", "version": "1", "quality_range": (0, 1),
             "encode": lambda self, images, point: [], "decode": lambda self, streams: [], **methods}
    return type("C", (Codec,), attrs)


@pytest.mark.parametrize("methods, problem", [
    ({"encode": lambda self, image, quality: []}, "parameter 1 is 'image', expected 'images'"),
    ({"encode": lambda self, images: []}, "parameter 'point' is missing"),
    ({"decode": lambda self, streams, size: []}, "parameter 'size' is required but never passed"),
    ({"decode": lambda self, streams, *, size: []}, "keyword parameter 'size' is required but never passed"),
    ({"__init__": lambda self, model_path: None}, "parameter 1 is 'model_path', expected 'params'"),
    ({"check_quality": None}, "C.check_quality is NoneType, expected a method like Codec.check_quality(self, quality)"),
    ({"quality_range": None}, "C.quality_range is None, expected a tuple"),
    ({"name": "d"}, "registered as 'c' but C.name is 'd'"),
], ids=["renamed", "missing", "extra-required", "extra-keyword", "init", "not-a-method", "attribute", "name"])
def test_the_validator_names_what_is_wrong(methods: dict, problem: str) -> None:
    with pytest.raises(PluginError) as err:
        validate_codec_class("c", _codec(**methods))
    assert problem in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("methods", [
    {"encode": lambda self, images, point, progress=None: []},
    {"encode": lambda self, images, point, **options: []},
    {"decode": lambda self, *streams: []},
    {"unavailable_reason": lambda self, quality=None: "no library"},
], ids=["extra-default", "kwargs", "args", "override"])
def test_compatible_overrides_pass(methods: dict) -> None:
    validate_codec_class("c", _codec(**methods))


def test_a_plugin_of_another_kind_is_rejected() -> None:
    from bench.tasks.classification import Classification

    with pytest.raises(PluginError, match=r"is not a subclass of bench.codecs.base.Codec"):
        validate_codec_class("classification", Classification)
    with pytest.raises(PluginError, match=r"^codec 'x' \(tests.test_registry:C\) is not a valid codec: registered as 'x'"):
        Registry("codec", validate=validate_codec_class).register("x", _codec())


# -- real entry points of real (temporary) distributions ---------------------------------------------

GOOD = """
    from bench.codecs.pillow import JPEG

    class Other(JPEG):
        name = "other"
"""


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_broken_distribution_breaks_only_its_own_name(site: Path) -> None:
    write_distribution(site, "good-codec", {"bench.test-codecs": {"other": "good_codec:Other"}}, {"good_codec": GOOD})
    write_distribution(site, "bad-codec", {"bench.test-codecs": {"bad": "bad_codec:Bad"}},
                       {"bad_codec": "raise ImportError('libbad.so.3: cannot open shared object file')\n"})
    reg = Registry("codec", group="bench.test-codecs", validate=validate_codec_class)
    assert reg.names() == ["bad", "other"]
    assert reg.get("other").name == "other" and reg.origin("other").startswith("distribution good-codec 0.1")
    with pytest.raises(BrokenPluginError) as err:
        reg.get("bad")
    assert str(err.value) == ("codec 'bad' from distribution bad-codec 0.1 (entry point bad_codec:Bad) cannot be used: "
                              "ImportError: libbad.so.3: cannot open shared object file")
    assert isinstance(err.value, BenchError) and "bad" in reg


def test_an_entry_point_shadowing_a_built_in_breaks_that_name(site: Path) -> None:
    write_distribution(site, "faster-jpeg", {"bench.test-codecs": {"jpeg": "good_codec:Other"}}, {"good_codec": GOOD})
    reg = Registry("codec", group="bench.test-codecs", validate=validate_codec_class)
    reg.register("jpeg", "bench.codecs.pillow:JPEG")
    reg.register("webp", "bench.codecs.pillow:WebP")
    with pytest.raises(BrokenPluginError, match=r"^codec 'jpeg' is given twice, by bench \(built-in\) and by "
                                                r"distribution faster-jpeg 0.1 \(entry point good_codec:Other\)"):
        reg.get("jpeg")
    assert reg.get("webp").name == "webp"


def test_registering_a_taken_name_names_both() -> None:
    reg = Registry("codec", validate=validate_codec_class)
    reg.register("jpeg", "bench.codecs.pillow:JPEG")
    with pytest.raises(DuplicatePluginError, match=r"'jpeg' is already registered by bench \(built-in\); "
                                                   r"package tests registers it again"):
        reg.register("jpeg", _codec(name="jpeg"))


def test_ls_models_says_when_an_optional_backend_lacks_its_packages(monkeypatch, capsys) -> None:
    from bench.cli import main
    from bench.models import MODELS

    monkeypatch.setattr(MODELS.get("mmdet"), "package", "mmdet_not_installed_here")
    assert main(["ls", "models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "unavailable: mmdet_not_installed_here is not installed (see docs/openmmlab.md" in lines["mmdet"]
    assert lines["tiny-resnet"].split()[1] == "ok"
