"""A procedural, seeded, download-free paired set in the spirit of CMP Facades: label map -> rendered facade.

Every pair is a pure function of (seed, split, index). A (the source) is a flat colour-coded label map; B (the
target) renders each class with its own material: brick courses with mortar and per-building hue, glass with sky
reflections and frames, wooden doors, balcony railings, stone cornices with shading, a sky gradient. The mapping
is learnable (classes decide materials) but not trivial (textures, shading and building colours vary).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import numpy as np
from PIL import Image

from datamodules.config import DataConfig, SyntheticConfig
from datamodules.io import to_channels
from datamodules.paired import SPLITS, PairDataset
from safeio.errors import ConfigError

SIZES = (32, 64, 128, 256)
# class -> label colour (A)
LABELS: Dict[str, Tuple[int, int, int]] = {
    "sky": (0, 0, 170), "wall": (0, 85, 255), "window": (0, 255, 255), "door": (255, 170, 0),
    "balcony": (170, 255, 85), "cornice": (255, 85, 0), "sill": (255, 255, 0), "shop": (170, 0, 0),
}
CLASS_IDS = {name: i for i, name in enumerate(LABELS)}
SPLIT_OFFSET = {"train": 0, "val": 1}  # disjoint random streams per split; the test split is the validation one


def _layout(rng: np.random.Generator, s: int) -> np.ndarray:
    """Integer class map (s, s)."""
    m = np.full((s, s), CLASS_IDS["wall"], np.int64)
    sky = int(rng.uniform(0.0, 0.18) * s)
    m[:sky] = CLASS_IDS["sky"]
    corn_h = max(1, s // 32)
    m[sky:sky + corn_h] = CLASS_IDS["cornice"]
    floors = int(rng.integers(3, 6))
    top = sky + corn_h
    ground_h = int((s - top) * rng.uniform(0.18, 0.28))
    ground_top = s - ground_h
    floor_h = (ground_top - top) / floors
    cols = int(rng.integers(3, 6))
    margin = rng.uniform(0.04, 0.1) * s
    col_w = (s - 2 * margin) / cols
    win_w = col_w * rng.uniform(0.35, 0.65)
    win_h = floor_h * rng.uniform(0.45, 0.7)
    has_balc = rng.random(floors) < 0.35
    for f in range(floors):
        y0 = int(top + f * floor_h + (floor_h - win_h) * 0.4)
        y1 = int(y0 + win_h)
        if f > 0:
            m[int(top + f * floor_h):int(top + f * floor_h) + max(1, corn_h // 2 + (s >= 128))] = CLASS_IDS["cornice"]
        for c in range(cols):
            cx = margin + (c + 0.5) * col_w
            x0, x1 = int(cx - win_w / 2), int(cx + win_w / 2)
            m[y0:y1, x0:x1] = CLASS_IDS["window"]
            m[y1:y1 + max(1, s // 64), x0 - 1:x1 + 1] = CLASS_IDS["sill"]
            if has_balc[f]:
                m[y1 - max(1, int(win_h * 0.3)):y1 + 1, x0 - 2:x1 + 2] = CLASS_IDS["balcony"]
    # ground floor: shop windows and a door
    m[ground_top:ground_top + corn_h] = CLASS_IDS["cornice"]
    door_c = int(rng.integers(0, cols))
    for c in range(cols):
        cx = margin + (c + 0.5) * col_w
        if c == door_c:
            dw = col_w * 0.45
            m[int(ground_top + ground_h * 0.25):s, int(cx - dw / 2):int(cx + dw / 2)] = CLASS_IDS["door"]
        elif rng.random() < 0.7:
            sw = col_w * 0.75
            m[int(ground_top + ground_h * 0.25):int(s - ground_h * 0.12), int(cx - sw / 2):int(cx + sw / 2)] = \
                CLASS_IDS["shop"]
    return m


def _render(m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photo-like rendering (s, s, 3) float in [0, 1] of a class map."""
    s = m.shape[0]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    out = np.zeros((s, s, 3), np.float32)
    # wall: brick courses with mortar lines and a per-building hue
    hue = rng.uniform(0, 1)
    base = np.array([0.62 + 0.2 * hue, 0.45 + 0.12 * (1 - hue), 0.33 + 0.1 * rng.uniform()], np.float32)
    course = max(2, s // 24)
    rows = (np.arange(s) // course)[:, None]
    bed_joints = ((np.arange(s) % course) == 0)[:, None]  # horizontal mortar lines
    head_joints = ((np.arange(s)[None, :] + (rows % 2) * course) % (2 * course)) == 0  # vertical, staggered per row
    mortar = bed_joints | head_joints
    shade = (0.85 + 0.25 * (1 - yy))[..., None]
    wall = base * shade * np.where(mortar[..., None], 0.78, 1.0)
    out[:] = wall
    # sky gradient
    sky = np.stack([0.55 + 0.3 * yy, 0.7 + 0.2 * yy, 0.95 + 0.0 * yy], -1)
    # glass: dark blue with a diagonal reflection band
    refl = 0.25 * np.clip(np.sin((xx + yy) * 9.0 * np.pi), 0, 1)
    glass = np.stack([0.12 + refl, 0.18 + refl, 0.28 + refl], -1)
    door = np.stack([0.35 + 0.06 * np.sin(xx * s * 0.9), 0.2 + 0.03 * np.sin(xx * s * 0.9), 0.1 + 0 * xx], -1)
    stone = np.stack([0.86 - 0.2 * yy, 0.84 - 0.2 * yy, 0.78 - 0.2 * yy], -1)
    rail = np.where((np.arange(s) % max(2, s // 32) == 0)[None, :, None], 0.08, 0.35) * np.ones((s, s, 3), np.float32)
    shop = np.stack([0.2 + 0.4 * yy, 0.22 + 0.35 * yy, 0.25 + 0.3 * yy], -1)
    for name, tex in (("sky", sky), ("window", glass), ("door", door), ("cornice", stone), ("sill", stone * 0.95),
                      ("balcony", rail), ("shop", shop)):
        sel = m == CLASS_IDS[name]
        out[sel] = tex[sel]
    # window frames: darken the border pixels of glass regions
    glass_mask = m == CLASS_IDS["window"]
    edge = glass_mask & ~(np.roll(glass_mask, 1, 0) & np.roll(glass_mask, -1, 0) & np.roll(glass_mask, 1, 1)
                          & np.roll(glass_mask, -1, 1))
    out[edge] = (0.9, 0.9, 0.88)
    out += rng.normal(0, 0.02, out.shape).astype(np.float32)
    return np.clip(out, 0, 1)


def check_synthetic(cfg: SyntheticConfig) -> None:
    if cfg.size not in SIZES:
        raise ConfigError(f"data.synthetic.size: expected one of {list(SIZES)}, got {cfg.size}",
                          key="data.synthetic.size")
    for key in ("n_train", "n_val"):
        if int(getattr(cfg, key)) < 1:
            raise ConfigError(f"data.synthetic.{key}: expected a positive number of pairs, got {getattr(cfg, key)}",
                              key=f"data.synthetic.{key}")


def stream(split: str) -> str:
    """The random stream a split draws from: test re-uses validation (SyntheticConfig has no n_test)."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got '{split}'")
    return "train" if split == "train" else "val"


def make_pair(seed: int, split: str, index: int, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """(label map, rendering) as uint8 (size, size, 3); a pure function of its arguments."""
    if size not in SIZES:
        raise ConfigError(f"data.synthetic.size: expected one of {list(SIZES)}, got {size}", key="data.synthetic.size")
    rng = np.random.default_rng([seed, SPLIT_OFFSET[stream(split)], index])
    classes = _layout(rng, size)
    palette = np.array(list(LABELS.values()), np.uint8)
    photo = (_render(classes, rng) * 255 + 0.5).astype(np.uint8)
    return palette[classes], photo


def split_size(cfg: SyntheticConfig, split: str) -> int:
    return cfg.n_train if stream(split) == "train" else cfg.n_val


def make_split(cfg: SyntheticConfig, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """All pairs of a split as two uint8 arrays (n, size, size, 3): label maps A and renderings B."""
    check_synthetic(cfg)
    pairs = [make_pair(cfg.seed, split, i, cfg.size) for i in range(split_size(cfg, split))]
    return np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])


class SyntheticDataset(PairDataset):
    """The `synthetic` kind: the split generated once at construction and kept in memory (400 pairs at 64 px take
    well under a second), then the usual transforms (the demo config uses preprocess none; flips apply in train).
    With direction BtoA the rendering is the source. Names look like "synthetic/val/0007.png"."""

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        super().__init__(cfg, split, train)
        labels, photos = make_split(cfg.synthetic, split)
        src, tgt = (labels, photos) if cfg.direction == "AtoB" else (photos, labels)
        n = len(src) if not cfg.max_dataset_size else min(len(src), cfg.max_dataset_size)
        self.sources = self._channels(src[:n], cfg.input_nc)
        self.targets = self._channels(tgt[:n], cfg.output_nc)

    @staticmethod
    def _channels(images: np.ndarray, nc: int) -> np.ndarray:
        return images if nc == 3 else np.stack([to_channels(Image.fromarray(im), nc) for im in images])

    def __len__(self) -> int:
        return len(self.sources)

    def load(self, index: int):
        return self.sources[index], self.targets[index], f"synthetic/{self.split}/{index:04d}.png"


def write_synthetic_dataset(root: str | Path, cfg: DataConfig, layout: str = "aligned") -> Path:
    """Write the synthetic set (cfg.synthetic) as image files per split (train, val, and test = val) in the
    `aligned` layout (root/<split>/0000.png, A | B side by side) or the `paired` one (root/<split>/{A,B}/0000.png)."""
    if layout not in ("aligned", "paired"):
        raise ValueError(f"layout: expected 'aligned' or 'paired', got '{layout}'")
    root = Path(root)
    for split in SPLITS:
        labels, photos = make_split(cfg.synthetic, split)
        for i, (a, b) in enumerate(zip(labels, photos)):
            if layout == "aligned":
                (root / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.concatenate([a, b], 1)).save(root / split / f"{i:04d}.png")
            else:
                for side, img in (("A", a), ("B", b)):
                    (root / split / side).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(img).save(root / split / side / f"{i:04d}.png")
    return root
