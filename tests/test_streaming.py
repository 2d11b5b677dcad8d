"""Streaming: images flow through a run in bounded batches, and cache entries are written
and read piece by piece."""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

import bench.cache
import bench.datasets.photos
from bench.cache import Cache, LazyDecoded, LazyStreams, Transcoded
from bench.config import parse_grid
from bench.grid import resolve
from bench.runner import RunOptions, run
from bench.tasks.classification import EVAL_BATCH
from bench.transcode import CHUNK


def transcoded(n: int, rng: np.random.Generator) -> Transcoded:
    decoded = [rng.integers(0, 256, (8 + i, 5 + 2 * i, 3), dtype=np.uint8) for i in range(n)]
    streams = [bytes(rng.integers(0, 256, 3 + i, dtype=np.uint8)) for i in range(n)]
    return Transcoded(key="k" * 32, decoded=decoded, streams=streams, heights=np.array([d.shape[0] for d in decoded]),
                      widths=np.array([d.shape[1] for d in decoded]), psnr=rng.random(n), ms_ssim=np.full(n, np.nan),
                      encode_s=rng.random(n), decode_s=rng.random(n), bits=8.0 * np.arange(3, 3 + n))


def test_cache_entries_round_trip_and_read_lazily(tmp_path: Path) -> None:
    t = transcoded(7, np.random.default_rng(0))
    cache = Cache(tmp_path)
    writer = cache.transcode_writer(t.key, {"what": "test"}, keep_pixels=True)
    writer.add(t.decoded, t.streams, psnr=t.psnr, ms_ssim=t.ms_ssim, encode_s=t.encode_s, decode_s=t.decode_s,
               bits=t.bits)
    writer.commit(t.rate_source)
    back = cache.get_transcode(t.key)
    assert isinstance(back.decoded, LazyDecoded) and isinstance(back.streams, LazyStreams)
    assert len(back) == 7
    for i in range(7):
        assert np.array_equal(back.decoded[i], t.decoded[i]) and back.streams[i] == t.streams[i]
    assert back.streams[2:5] == t.streams[2:5] and back.streams[::3] == t.streams[::3] and back.streams[5:2] == []
    assert [d.shape for d in back.decoded[-2:]] == [d.shape for d in t.decoded[-2:]]
    assert np.array_equal(back.decoded[-1], t.decoded[-1])
    with pytest.raises(IndexError):
        back.decoded[7]
    a, b = back.summary(), t.summary()
    assert np.isnan(a.pop("ms_ssim")) and np.isnan(b.pop("ms_ssim")) and a == b


def test_an_entry_keeps_its_streams_and_decodes_them_when_read(tmp_path: Path) -> None:
    """By default an entry is its bitstreams and records: the pixels are decoded from the
    streams by the codec when read (one stream per index, a slice in one call), equal to
    the codec's own decode; the entry's bytes are the streams' plus the records'."""
    from bench.cache import DecodedStreams
    from bench.codecs.base import OperatingPoint
    from bench.codecs.pillow import JPEG
    from bench.errors import CodecError

    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (40 + 8 * i, 56, 3), dtype=np.uint8) for i in range(5)]
    codec = JPEG()
    streams = codec.encode(images, OperatingPoint(30))
    decoded = codec.decode(streams)
    cache = Cache(tmp_path)
    writer = cache.transcode_writer("j" * 32, {})
    writer.add(decoded, streams, psnr=[0.0] * 5, bits=[8.0 * len(s) for s in streams])
    writer.commit("bitstream")
    entry = tmp_path / "transcode" / "jj" / ("j" * 32)
    assert sorted(p.name for p in entry.iterdir()) == ["meta.json", "streams.bin"]
    assert (entry / "streams.bin").stat().st_size == sum(map(len, streams))
    back = cache.get_transcode("j" * 32, codec)
    assert isinstance(back.decoded, DecodedStreams) and len(back) == 5 and back.decoded.in_workers
    assert back.decoded.shapes == [im.shape for im in images]
    assert all(np.array_equal(back.decoded[i], decoded[i]) for i in range(5))
    assert all(np.array_equal(a, b) for a, b in zip(back.decoded[1:4], decoded[1:4]))
    with pytest.raises(CodecError, match="keeps only its streams"):
        cache.get_transcode("j" * 32).decoded[0]


def test_an_aborted_entry_is_never_seen(tmp_path: Path) -> None:
    t = transcoded(3, np.random.default_rng(1))
    cache = Cache(tmp_path)
    writer = cache.transcode_writer(t.key, {}, keep_pixels=True)
    writer.add(t.decoded[:2], t.streams[:2], psnr=t.psnr[:2])
    assert not cache.has_transcode(t.key)  # half written: invisible
    writer.abort()
    assert not cache.has_transcode(t.key) and not any((tmp_path / "transcode").rglob("*.npz"))


def photo_folder(root: Path, n: int) -> Path:
    rng = np.random.default_rng(n)
    root.mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / f"im{i:04d}.png")
    return root


def test_images_in_memory_do_not_grow_with_the_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run over 400 photos (A and B, transcode at two qualities) never holds more than a
    few batches of original or decoded images at once: every image read from a file or
    from the cache is tracked until it is freed."""
    live = {"originals": 0, "decoded": 0}
    peak = dict(live)

    def track(kind: str, im: np.ndarray) -> np.ndarray:
        live[kind] += 1
        peak[kind] = max(peak[kind], live[kind])
        weakref.finalize(im, lambda: live.__setitem__(kind, live[kind] - 1))
        return im

    load, check = bench.datasets.photos.load_image, bench.cache.DecodedStreams._check
    monkeypatch.setattr(bench.datasets.photos, "load_image", lambda p: track("originals", load(p)))
    monkeypatch.setattr(bench.cache.DecodedStreams, "_check",
                        lambda self, ims, idx: [track("decoded", im) for im in check(self, ims, idx)])
    n = 400
    grid = {"name": "stream", "codecs": [{"codec": "jpeg", "qualities": [20, 80]}],
            "experiments": [{"task": "classification",
                             "dataset": {"name": "photos", "path": str(photo_folder(tmp_path / "photos", n))},
                             "model": {"name": "efficientnet-lite0"}, "scenarios": ["A", "B"]}]}
    summary = run(resolve(parse_grid(grid)), RunOptions(out=tmp_path / "out", workers=1, quiet=True))
    assert summary["status"] == "finished" and summary["cells_run"] == 3 and summary["encodes"] == 2 * n
    bound = max(CHUNK, EVAL_BATCH) + 1  # one chunk or batch, and the sample image
    assert 0 < peak["originals"] <= bound < n
    assert 0 < peak["decoded"] <= bound < n


def test_workers_read_file_backed_chunks_themselves(tmp_path: Path) -> None:
    """With a process pool a file-backed chunk travels as file names (the worker reads the
    pixels); the streams and measurements are those of the one-process run."""
    from bench.datasets.base import ImageFiles, LazyImages, chunk_of
    from bench.images import load_image

    folder = photo_folder(tmp_path / "photos", 40)
    images = LazyImages(sorted(folder.glob("*.png")), load_image)
    chunk = chunk_of(images, 32, 64)
    assert isinstance(chunk, ImageFiles) and len(chunk) == 8
    assert all(np.array_equal(a, b) for a, b in zip(chunk.read(), images[32:40]))
    grid = {"name": "files", "codecs": [{"codec": "webp", "qualities": [30]}],
            "experiments": [{"task": "classification", "dataset": {"name": "photos", "path": str(folder)},
                             "model": {"name": "efficientnet-lite0"}, "scenarios": ["B"]}]}
    plan = resolve(parse_grid(grid))
    one = run(plan, RunOptions(out=tmp_path / "one", workers=1, quiet=True))
    two = run(plan, RunOptions(out=tmp_path / "two", workers=2, quiet=True))
    assert one["encodes"] == two["encodes"] == 40
    [key] = [p.name for p in (tmp_path / "one" / "cache" / "transcode").glob("*/*")]
    a, b = Cache(tmp_path / "one" / "cache").get_transcode(key), Cache(tmp_path / "two" / "cache").get_transcode(key)
    assert list(a.streams) == list(b.streams) and np.array_equal(a.psnr, b.psnr)


def test_scenario_d_streams_its_latents_through_loader_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario D reads a split's latents as pixels are read: entropy-decoded from the cached
    streams batch by batch (training items in the loader's worker processes), so no process
    ever holds more than a few batches of them, whatever the split's size."""
    import os

    import bench.domain.train
    from bench.domain.train import EVAL_BATCH as LATENT_EVAL_BATCH

    log = tmp_path / "latents.log"
    live: dict[str, int] = {"n": 0}
    inputs = bench.domain.train.StreamLatents._inputs

    def tracked(self, latents):
        out = inputs(self, latents)
        for t in out:  # per process: a forked worker counts its own
            live["n"] += 1
            weakref.finalize(t, lambda: live.__setitem__("n", live["n"] - 1))
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {len(out)} {live['n']}\n")
        return out

    monkeypatch.setattr(bench.domain.train.StreamLatents, "_inputs", tracked)
    monkeypatch.setattr(bench.domain.train, "HOLD_LATENT_BYTES", 0)  # a split too large to hold
    n_train, n_val, batch = 192, 96, 16
    grid = {"name": "dstream", "codecs": [{"codec": "bmshj2018-hyperprior", "weights": "embedded", "qualities": [1]}],
            "experiments": [{"task": "classification",
                             "dataset": {"name": "shapes", "n_train": n_train, "n_val": n_val, "size": 32},
                             "model": {"name": "tiny-resnet", "widths": [8, 16]}, "scenarios": ["D"],
                             "train": {"epochs": 1, "batch_size": 32, "lr": 0.003},
                             "compressed_domain": {"train": {"epochs": 2, "batch_size": batch, "lr": 0.003},
                                                   "variants": [{"arch": "aa"}]}}]}
    summary = run(resolve(parse_grid(grid)), RunOptions(out=tmp_path / "out", workers=2, quiet=True))
    assert summary["status"] == "finished" and summary["cells_run"] == 1
    events = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    workers = {pid for pid, _, _ in events} - {os.getpid()}
    assert workers, "no latents were decoded in a loader worker"
    decoded_in_workers = sum(n for pid, n, _ in events if pid in workers)
    assert decoded_in_workers == 2 * n_train  # every training item, each epoch, one by one
    bound = max(LATENT_EVAL_BATCH, 2 * 2 * batch) + 2  # an eval batch, or a worker's prefetched batches
    assert max(peak for _, _, peak in events) <= bound < n_train


def test_a_small_split_s_latents_are_decoded_once_and_held() -> None:
    """Below ``HOLD_LATENT_BYTES`` the latents are entropy-decoded once, in batches, and held:
    the same tensors a streaming read gives (ŷ is integers: exact), not decoded again per epoch."""
    from bench.codecs import CODECS, OperatingPoint
    from bench.datasets.synthetic import ShapesSpec, generate
    from bench.domain.train import StreamLatents, stream_latents

    cls = CODECS.get("bmshj2018-hyperprior")
    codec = cls(cls.Params(weights="embedded"))
    images = list(generate(ShapesSpec(n_train=0, n_val=5, size=64), "val").images)
    streams = codec.encode(images, OperatingPoint(1))
    held, splits = stream_latents(streams, codec, ["y_hat"], [(64, 64)] * 5)
    assert isinstance(held.latents, list) and len(held.latents) == 5 and splits == [held.latents[0].shape[0]]
    streamed = StreamLatents(streams, codec, ["y_hat"], splits)
    for i in range(5):
        assert torch.equal(held.latents[i], streamed[i])
