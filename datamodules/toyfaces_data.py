"""The `toyfaces` data kind: procedural toy faces (datamodules.toyfaces) as paired batches, one task per config.

    faces       A = B = the posed face (a StyleGAN2 prior reads only B)
    sketch      A = line sketch of the posed face (1 channel), B = the posed face
    frontalize  A = the posed face (yaw up to max_yaw), B = the same face rendered frontally
    sr          A = the posed face degraded by `data.degradation` (e.g. downsample x4), B = the posed face

A split is rendered once at construction (about 700 faces/s at 64 px on one core) and kept in memory; every
sample is a pure function of (seed, split, index), so train, val and test never share a face. Then the usual
transforms apply (configs use preprocess `none`; flips apply to both images of a pair in training).
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
from PIL import Image

from datamodules.config import DataConfig, ToyFacesConfig
from datamodules.degrade import DEGRADATIONS, check_degradation
from datamodules.io import to_channels
from datamodules.paired import DegradedDataset, PairDataset
from datamodules.toyfaces import MAX_SIZE, MIN_SIZE, ToyFaces, face_params, render_face
from safeio.errors import ConfigError

# task -> (source key, target key) of ToyFaces items; None: the source is made from the target by a degradation
TASKS: Dict[str, Tuple[str | None, str]] = {
    "faces": ("image", "image"),
    "sketch": ("sketch", "image"),
    "frontalize": ("image", "frontal"),
    "sr": (None, "image"),
}


def check_toyfaces(cfg: ToyFacesConfig) -> None:
    if cfg.task not in TASKS:
        raise ConfigError(f"data.toyfaces.task: expected one of {list(TASKS)}, got '{cfg.task}'",
                          key="data.toyfaces.task")
    if not MIN_SIZE <= cfg.size <= MAX_SIZE:
        raise ConfigError(f"data.toyfaces.size: expected {MIN_SIZE}..{MAX_SIZE} pixels, got {cfg.size}",
                          key="data.toyfaces.size")
    for key in ("n_train", "n_val"):
        if int(getattr(cfg, key)) < 1:
            raise ConfigError(f"data.toyfaces.{key}: expected a positive number of faces, got {getattr(cfg, key)}",
                              key=f"data.toyfaces.{key}")
    if cfg.seed < 0:
        raise ConfigError(f"data.toyfaces.seed: expected a seed >= 0, got {cfg.seed}", key="data.toyfaces.seed")
    if not 0 <= cfg.max_yaw <= 90:
        raise ConfigError(f"data.toyfaces.max_yaw: expected 0..90 degrees, got {cfg.max_yaw}",
                          key="data.toyfaces.max_yaw")


def render_split(cfg: ToyFacesConfig, split: str, n: int) -> Dict[str, np.ndarray]:
    """The faces of a split as uint8 arrays {key: (n, H, W, C)} for the keys the task needs."""
    src_key, tgt_key = TASKS[cfg.task]
    if {src_key, tgt_key} <= {None, "image"}:  # posed faces only: skip the frontal and sketch renderings
        images = np.stack([render_face(face_params(cfg.seed, split, i, cfg.max_yaw), cfg.size) for i in range(n)])
        return {"image": images}
    arrays = ToyFaces(n, cfg.size, cfg.seed, split, cfg.max_yaw).arrays()
    return {k: (v if v.ndim == 4 else v[..., None]) for k, v in arrays.items() if k in (src_key, tgt_key)}


class ToyFacesDataset(DegradedDataset):
    """data.kind `toyfaces`: names look like "toyfaces/val/00007.png". With direction BtoA source and target swap
    (not for the `sr` task, whose source is made from the target). The `sr` sources come from DegradedDataset's
    `make_source` (fresh degradations in training, seeded by (split, index) in evaluation)."""

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        PairDataset.__init__(self, cfg, split, train)  # not DegradedDataset's: there is no folder to list
        t = cfg.toyfaces
        check_toyfaces(t)
        if t.task == "sr":
            check_degradation(cfg.degradation)
            if cfg.direction != "AtoB":
                raise ConfigError("data.direction: the toyfaces task 'sr' makes its source from the target; use AtoB",
                                  key="data.direction")
        n = t.n_train if split == "train" else t.n_val
        n = min(n, cfg.max_dataset_size) if cfg.max_dataset_size else n
        arrays = render_split(t, split, n)
        src_key, tgt_key = TASKS[t.task]
        if cfg.direction == "BtoA":
            src_key, tgt_key = tgt_key, src_key
        self.targets = self._channels(arrays[tgt_key], cfg.output_nc)
        self.sources = None if src_key is None else self._channels(arrays[src_key], cfg.input_nc)
        self.degrade = DEGRADATIONS[cfg.degradation.name] if src_key is None else None

    @staticmethod
    def _channels(images: np.ndarray, nc: int) -> np.ndarray:
        if images.shape[-1] == nc:
            return images
        return np.stack([to_channels(Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im), nc) for im in images])

    def __len__(self) -> int:
        return len(self.targets)

    def load(self, index: int):
        src = None if self.sources is None else self.sources[index]
        return src, self.targets[index], f"toyfaces/{self.split}/{index:05d}.png"

    def make_source(self, index: int):
        return super().make_source(index) if self.degrade is not None else None
