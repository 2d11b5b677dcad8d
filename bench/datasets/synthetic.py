"""The embedded "shapes" dataset: small RGB scenes generated deterministically from a seed.

One dataset serves all three tasks, so the whole pipeline runs offline:

- classification: the class of the main object, which is always clearly the largest
  (its visible area is at least twice that of any other object);
- detection: every object's box (x0, y0, x1, y1; x1/y1 exclusive) and class;
- segmentation: a per-pixel map, 0 = background and ``c + 1`` for class ``c``.

A class is a shape (circle, square, triangle, cross, ring) crossed with a fill (plain, or
stripes with a period of 6–9 px at 128×128, at moderate contrast). Colours say nothing
about the class. Lengths scale with the image (they are given for 128×128, the default).

Scenes are textured backgrounds (gradients, band-limited 1/f noise, soft colour blotches,
sometimes broad stripes), clutter (small blobs and thin lines, never labelled) and 1–3
objects, drawn with analytic anti-aliasing from signed distance functions.

Each image comes from its own seed, ``[seed, split, 0, index]``, so image ``i`` of a split
does not depend on how many images are asked for, and train and val never share a stream.
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass

import numpy as np
import scipy.fft

#: Bump when the generator's output changes, so cached results keyed on it are invalidated.
GENERATOR_VERSION = 2

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring")
FILLS: tuple[str, ...] = ("plain", "striped")
CLASSES: tuple[str, ...] = tuple(f"{s}-{f}" for s in SHAPES for f in FILLS)
SPLITS: tuple[str, ...] = ("train", "val")

_RING_INNER = 0.5  # inner radius / outer radius
_CROSS_HALF_WIDTH = 0.32  # arm half-width / arm length
# Area of each shape with circumradius 1, so objects can be sized by area.
_UNIT_AREA = {
    "circle": np.pi,
    "square": 2.0,
    "triangle": 3.0 * np.sqrt(3.0) / 4.0,
    "cross": 8.0 * _CROSS_HALF_WIDTH - 4.0 * _CROSS_HALF_WIDTH**2,
    "ring": np.pi * (1.0 - _RING_INNER**2),
}
_MAIN_AREA = (0.14, 0.28)  # fraction of the image
_OTHER_AREA = (0.015, 0.04)
_MAX_ROTATION = np.pi / 12  # shapes are drawn upright, turned by at most 15°
#: Lengths below are in pixels of a 128×128 image and scale with the image size.
_REFERENCE_SIZE = 128
_STRIPE_PERIOD = (6.0, 9.0)  # pixels
_STRIPE_AMPLITUDE = (0.08, 0.15)  # of full scale, added to all channels (luma)
_GRAIN_AMPLITUDE = (0.025, 0.055)  # std of the background's fine grain, of full scale
_BACKGROUND_MAX_FREQ = 7.0  # cycles per image: background texture stays coarser than stripes


@dataclass(frozen=True)
class ShapesSpec:
    """What identifies a generated shapes dataset; same spec, byte-identical arrays."""

    seed: int = 0
    n_train: int = 2000
    n_val: int = 500
    size: int = 128  # square images, size x size, a multiple of 8, at least 32

    def __post_init__(self) -> None:
        problems = []
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        if self.n_train < 0 or self.n_val < 0:
            problems.append(f"n_train and n_val must be >= 0, got {self.n_train}, {self.n_val}")
        if self.size < 32 or self.size % 8:
            problems.append(f"size must be a multiple of 8 and >= 32, got {self.size}")
        if problems:
            raise ValueError("invalid ShapesSpec: " + "; ".join(problems))


@dataclass
class ShapesSplit:
    """One split of the shapes dataset, with annotations for all three tasks."""

    images: np.ndarray  # (N, size, size, 3) uint8
    labels: np.ndarray  # (N,) int64, class of the main (largest) object
    boxes: list[np.ndarray]  # per image (k, 4) float32 x0, y0, x1, y1, back to front
    box_labels: list[np.ndarray]  # per image (k,) int64
    masks: np.ndarray  # (N, size, size) uint8, 0 = background, c + 1 = class c

    def __len__(self) -> int:
        return len(self.images)


def generate(spec: ShapesSpec, split: str) -> ShapesSplit:
    """Generate the ``"train"`` or ``"val"`` split of ``spec``."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    split_index = SPLITS.index(split)
    n = spec.n_train if split == "train" else spec.n_val
    size = spec.size
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.empty((n, size, size), np.uint8)
    labels = np.empty(n, np.int64)
    boxes: list[np.ndarray] = []
    box_labels: list[np.ndarray] = []
    for i in range(n):
        labels[i] = _balanced_label(spec.seed, split_index, i)
        rng = np.random.default_rng([spec.seed, split_index, 0, i])
        image, mask, b, bl = _render(rng, int(labels[i]), size)
        images[i], masks[i] = image, mask
        boxes.append(b)
        box_labels.append(bl)
    return ShapesSplit(images, labels, boxes, box_labels, masks)


def _balanced_label(seed: int, split_index: int, i: int) -> int:
    """Labels are a fresh permutation of the classes in every block of len(CLASSES)."""
    block, offset = divmod(i, len(CLASSES))
    perm = _block_permutation(seed, split_index, block)
    return int(perm[offset])


@functools.lru_cache(maxsize=64)
def _block_permutation(seed: int, split_index: int, block: int) -> np.ndarray:
    return np.random.default_rng([seed, split_index, 1, block]).permutation(len(CLASSES))


# --- one scene -------------------------------------------------------------------------


@dataclass
class _Object:
    cls: int
    cx: float
    cy: float
    r: float  # circumradius, pixels
    rows: slice
    cols: slice
    sdf: np.ndarray  # signed distance in pixels over the window rows x cols
    hard: np.ndarray  # (size, size) bool: pixel centre inside the shape

    @property
    def striped(self) -> bool:
        return self.cls % len(FILLS) == 1


def _render(
    rng: np.random.Generator, label: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    img = _background(rng, size)
    _draw_clutter(rng, img)
    objects = _layout(rng, label, size)
    mask = np.zeros((size, size), np.uint8)
    for obj in objects:
        _paint(rng, img, obj)
        mask[obj.hard] = obj.cls + 1
    boxes = np.empty((len(objects), 4), np.float32)
    for j, vis in enumerate(_visible(objects)):
        ys, xs = np.nonzero(vis)
        boxes[j] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    sensor_noise = np.float32(rng.uniform(0.5, 2.5) / 255)
    img += rng.standard_normal(img.shape, dtype=np.float32) * sensor_noise
    image = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return image, mask, boxes, np.array([o.cls for o in objects], np.int64)


def _visible(objects: list[_Object]) -> list[np.ndarray]:
    """Each object's hard mask minus everything drawn after it."""
    out: list[np.ndarray] = []
    above = np.zeros_like(objects[0].hard)
    for obj in reversed(objects):
        out.append(obj.hard & ~above)
        above |= obj.hard
    return out[::-1]


def _layout(rng: np.random.Generator, label: int, size: int) -> list[_Object]:
    """Place 1–3 objects in draw order; the main one ends up with >= 2x any other's area."""
    n = 1 + int(rng.choice(3, p=(0.4, 0.35, 0.25)))
    full = size * size
    attempts = 6
    for attempt in range(attempts):
        objs = [_make_object(rng, label, rng.uniform(*_MAIN_AREA) * full, size)]
        for _ in range(n - 1):
            cls = int(rng.integers(len(CLASSES)))
            objs.append(_make_object(rng, cls, rng.uniform(*_OTHER_AREA) * full, size))
        order = list(rng.permutation(n)) if attempt < attempts - 1 else list(range(1, n)) + [0]
        objs = [objs[k] for k in order]
        main = order.index(0)
        # Drop secondary objects that are mostly hidden; removing them only uncovers others.
        vis = [v.sum() for v in _visible(objs)]
        keep = [
            j
            for j, o in enumerate(objs)
            if j == main or vis[j] >= max(0.4 * o.hard.sum(), 8)
        ]
        objs = [objs[j] for j in keep]
        main = keep.index(main)
        vis = [v.sum() for v in _visible(objs)]
        others = [v for j, v in enumerate(vis) if j != main]
        if vis[main] >= 0.6 * objs[main].hard.sum() and all(vis[main] >= 2 * v for v in others):
            return objs
    return [objs[main]]  # unreachable in practice: the last attempt draws the main one on top


def _make_object(rng: np.random.Generator, cls: int, area: float, size: int) -> _Object:
    shape = SHAPES[cls // len(FILLS)]
    r = float(np.sqrt(area / _UNIT_AREA[shape]))
    lo, hi = r + 1.0, size - r - 1.0
    cx, cy = rng.uniform(lo, hi, 2) if hi > lo else (size / 2.0, size / 2.0)
    theta = float(rng.uniform(-_MAX_ROTATION, _MAX_ROTATION))
    r0, r1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, size)
    c0, c1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, size)
    px = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5 - cx
    py = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5 - cy
    sdf = _shape_sdf(shape, px, py, r, theta)
    hard = np.zeros((size, size), bool)
    hard[r0:r1, c0:c1] = sdf < 0
    return _Object(cls, float(cx), float(cy), r, slice(r0, r1), slice(c0, c1), sdf, hard)


def _shape_sdf(shape: str, px: np.ndarray, py: np.ndarray, r: float, theta: float) -> np.ndarray:
    """Signed distance (pixels, negative inside) of a shape centred at the origin."""
    if shape in ("circle", "ring"):
        d = np.sqrt(px * px + py * py)
        if shape == "circle":
            return d - r
        mid, half = r * (1 + _RING_INNER) / 2, r * (1 - _RING_INNER) / 2
        return np.abs(d - mid) - half
    if shape == "square":
        angles = np.pi / 4 + np.arange(4) * np.pi / 2
        verts = np.stack([np.cos(angles), np.sin(angles)], 1)
    elif shape == "triangle":
        angles = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        verts = np.stack([np.cos(angles), np.sin(angles)], 1)
    else:  # cross
        w = _CROSS_HALF_WIDTH
        quarter = np.array([[w, 1.0], [-w, 1.0], [-w, w]])
        verts = np.concatenate([quarter @ _rotation(k * np.pi / 2).T for k in range(4)])
    return _polygon_sdf(px, py, (r * verts) @ _rotation(theta).T)


def _rotation(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def _polygon_sdf(px: np.ndarray, py: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Exact signed distance to a simple polygon (after Inigo Quilez), all edges at once."""
    v = verts.astype(np.float32)[:, :, None, None]  # (m, 2, 1, 1)
    vp = np.roll(v, 1, axis=0)
    ex, ey = vp[:, 0] - v[:, 0], vp[:, 1] - v[:, 1]
    wx, wy = px - v[:, 0], py - v[:, 1]
    t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
    dx, dy = wx - ex * t, wy - ey * t
    dist = np.sqrt((dx * dx + dy * dy).min(axis=0))
    c1, c2, c3 = py >= v[:, 1], py < vp[:, 1], ex * wy > ey * wx
    crossing = (c1 & c2 & c3) | ~(c1 | c2 | c3)
    inside = np.logical_xor.reduce(crossing, axis=0)
    return np.where(inside, -dist, dist)


def _paint(rng: np.random.Generator, img: np.ndarray, obj: _Object) -> None:
    colour = _random_colour(rng, (0.25, 0.9), (0.3, 0.85))
    px = np.arange(obj.cols.start, obj.cols.stop, dtype=np.float32)[None, :] + 0.5
    py = np.arange(obj.rows.start, obj.rows.stop, dtype=np.float32)[:, None] + 0.5
    gx, gy = rng.uniform(-0.25, 0.25, 2)  # soft lighting across the object
    shade = 1.0 + (gx * (px - obj.cx) + gy * (py - obj.cy)) / obj.r
    fill = colour * shade[..., None]
    if obj.striped:
        period = rng.uniform(*_STRIPE_PERIOD) * img.shape[0] / _REFERENCE_SIZE
        angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(*_STRIPE_AMPLITUDE)
        wave = np.sin((px * np.cos(angle) + py * np.sin(angle)) * (2 * np.pi / period) + phase)
        fill = fill + (amp * wave)[..., None]
    alpha = np.clip(0.5 - obj.sdf, 0.0, 1.0)[..., None]
    window = img[obj.rows, obj.cols]
    window += alpha * (fill - window)


# --- background and clutter -------------------------------------------------------------


def _random_colour(
    rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]
) -> np.ndarray:
    h, s, v = rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32)


@functools.lru_cache(maxsize=8)
def _noise_band(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the ``rfft2`` grid of the band kept by background noise, and |f| there."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    band = (f > 0) & (f <= _BACKGROUND_MAX_FREQ / size)
    return np.flatnonzero(band), f[band].astype(np.float32)


def _smooth_noise(rng: np.random.Generator, n: int, size: int, beta: float) -> np.ndarray:
    """``n`` fields of band-limited 1/f^beta noise, each with zero mean and unit std."""
    index, freq = _noise_band(size)
    # Only the coefficients inside the band are drawn: the rest are zero anyway.
    coef = rng.standard_normal((n, len(index), 2), dtype=np.float32)
    spec = np.zeros((n, size * (size // 2 + 1)), np.complex64)
    spec[:, index] = (coef[..., 0] + 1j * coef[..., 1]) * freq ** (-beta / 2)
    fields = scipy.fft.irfft2(spec.reshape(n, size, size // 2 + 1), s=(size, size))
    fields /= fields.std(axis=(1, 2), keepdims=True) + 1e-8
    return fields


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    xx, yy = coords[None, :], coords[:, None]
    # A gradient between two muted colours ...
    a = _random_colour(rng, (0.05, 0.6), (0.25, 0.9))
    b = _random_colour(rng, (0.05, 0.6), (0.25, 0.9))
    angle = rng.uniform(0, 2 * np.pi)
    t = np.clip(xx * np.cos(angle) + yy * np.sin(angle) + 0.5, 0, 1)
    img = a + (b - a) * t[..., None]
    # ... mixed with soft blotches of 2-4 colours ...
    k = int(rng.integers(2, 5))
    fields = _smooth_noise(rng, k + 4, size, beta=rng.uniform(2.0, 3.5))
    logits = fields[:k] * rng.uniform(1.5, 6.0)
    weights = np.exp(logits - logits.max(axis=0))
    weights /= weights.sum(axis=0)
    palette = np.stack([_random_colour(rng, (0.1, 0.8), (0.2, 0.95)) for _ in range(k)])
    blotches = np.einsum("khw,kc->hwc", weights, palette)
    img += rng.uniform(0.2, 0.9) * (blotches - img)
    # ... sometimes broad, noise-warped stripes ...
    if rng.random() < 0.35:
        period = rng.uniform(0.14, 0.375)  # of the image
        angle = rng.uniform(0, np.pi)
        warp = fields[k] * rng.uniform(0.0, 0.6) * period
        phase = (xx * np.cos(angle) + yy * np.sin(angle) + warp) * (2 * np.pi / period)
        wave = 0.5 + 0.5 * np.sin(phase)
        stripe = _random_colour(rng, (0.1, 0.8), (0.2, 0.95))
        img += (rng.uniform(0.2, 0.6) * wave)[..., None] * (stripe - img)
    # ... a little per-channel texture ...
    img += np.moveaxis(fields[k + 1 :], 0, -1) * rng.uniform(0.01, 0.05)
    # ... and fine grain, as sand, foliage or fabric have: what codecs spend most bits on.
    img += _grain(rng, size)[..., None] * rng.uniform(*_GRAIN_AMPLITUDE)
    return img.astype(np.float32)


def _grain(rng: np.random.Generator, size: int) -> np.ndarray:
    """Luma grain of unit std: white noise under a 3×3 binomial blur (about 1 px)."""
    white = rng.standard_normal((size + 2, size + 2), dtype=np.float32)
    rows = white[:-2] + 2 * white[1:-1] + white[2:]
    blurred = rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]
    return blurred * np.float32(1 / 6)  # the taps [1 2 1] x [1 2 1]: their squares sum to 36


def _draw_clutter(rng: np.random.Generator, img: np.ndarray) -> None:
    """Small unlabelled blobs and thin lines, under the objects."""
    size = img.shape[0]
    scale = size / 64.0
    n = int(rng.integers(2, 9) * scale)  # items grow with scale too: density ~ scale
    # One draw for all parameters keeps the per-item Python overhead small.
    u = rng.random((n, 10)).astype(np.float32)
    colours = _hsv_to_rgb(u[:, 0], 0.9 * u[:, 1], 0.1 + 0.85 * u[:, 2])
    for (_, _, _, x, y, blob, a, b, angle, opacity), colour in zip(u, colours):
        cx, cy = x * size, y * size
        if blob < 0.5:  # a rotated ellipse
            ra, rb = (1.0 + 2.5 * a) * scale, (1.0 + 2.5 * b) * scale
            extent = max(ra, rb)
        else:  # a thin line segment
            half_length, half_width = (2.5 + 6.5 * a) * scale, 0.35 + 0.45 * b
            extent = half_length + 1
        r0, r1 = max(int(cy - extent) - 1, 0), min(int(cy + extent) + 2, size)
        c0, c1 = max(int(cx - extent) - 1, 0), min(int(cx + extent) + 2, size)
        px = np.arange(c0, c1, dtype=np.float32)[None, :] + (0.5 - cx)
        py = np.arange(r0, r1, dtype=np.float32)[:, None] + (0.5 - cy)
        cos, sin = np.cos(np.pi * angle), np.sin(np.pi * angle)
        along, across = px * cos + py * sin, py * cos - px * sin
        if blob < 0.5:  # distance approximated by scaling the ellipse to a unit circle
            sdf = (np.sqrt((along / ra) ** 2 + (across / rb) ** 2) - 1.0) * min(ra, rb)
        else:
            sdf = np.hypot(np.maximum(np.abs(along) - half_length, 0), across) - half_width
        alpha = np.clip(0.5 - sdf, 0.0, 1.0)[..., None] * (0.5 + 0.5 * opacity)
        window = img[r0:r1, c0:c1]
        window += alpha * (colour - window)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (all in [0, 1]) to RGB, shape (n, 3)."""
    k = (np.array([5.0, 3.0, 1.0], np.float32) + 6.0 * h[:, None]) % 6.0
    return v[:, None] - (v * s)[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
