"""Preprocessing as in the reference pix2pix/CycleGAN code (`data/base_dataset.py`), with albumentations.

The same random geometry (resize, crop, flip) goes to both images of a pair (albumentations `additional_targets`);
colour jitter goes to the source only. Resizing is PIL bicubic, as in the reference (antialiased when shrinking).
Training draws its randomness from torch's generator, so `pl.seed_everything` makes it reproducible and every
loader worker (seeded differently by the DataLoader) gets different augmentations.
Evaluation is deterministic: no flip, no jitter, the reference's test-time sizes (its test options set
load_size = crop_size) and a centre crop instead of a random one.
"""
from __future__ import annotations

import random
import warnings
from typing import Callable, Optional, Tuple

import albumentations as A
import numpy as np
import torch
from PIL import Image

from datamodules.config import DataConfig
from datamodules.io import DataError
from safeio.errors import ConfigError

PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
SEED_MAX = 2**62  # per-sample seeds for the augmentation generators, drawn from torch


def check_preprocess(cfg: DataConfig) -> None:
    if cfg.preprocess not in PREPROCESS:
        raise ConfigError(f"data.preprocess: expected one of {list(PREPROCESS)}, got '{cfg.preprocess}'",
                          key="data.preprocess")
    for key in ("load_size", "crop_size", "size_multiple"):
        if int(getattr(cfg, key)) < 1:
            raise ConfigError(f"data.{key}: expected a positive integer, got {getattr(cfg, key)}", key=f"data.{key}")
    if cfg.preprocess in ("resize_and_crop", "scale_width_and_crop") and cfg.crop_size > cfg.load_size:
        raise ConfigError(f"data.crop_size ({cfg.crop_size}) must not exceed data.load_size ({cfg.load_size}) "
                          f"with data.preprocess '{cfg.preprocess}'", key="data.crop_size")
    if not 0.0 <= cfg.color_jitter <= 1.0:
        raise ConfigError(f"data.color_jitter: expected a value in [0, 1], got {cfg.color_jitter}",
                          key="data.color_jitter")


def as_hwc(img: np.ndarray) -> np.ndarray:
    return img[:, :, None] if img.ndim == 2 else img


def resize_bicubic(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) uint8 -> (height, width, C) with PIL's bicubic filter, like the reference's transforms.Resize."""
    if img.shape[:2] == (height, width):
        return img
    pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    return as_hwc(np.array(pil.resize((width, height), Image.BICUBIC)))


class Rescale(A.DualTransform):
    """Resize every target to `size(h, w) -> (new_h, new_w)`; subclasses define the size rule."""

    def size(self, h: int, w: int) -> Tuple[int, int]:
        raise NotImplementedError

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        return resize_bicubic(as_hwc(img), *self.size(*img.shape[:2]))

    def apply_to_mask(self, mask: np.ndarray, **params) -> np.ndarray:
        """Label maps: nearest neighbour, never an interpolation that invents class indices."""
        mask = as_hwc(mask)
        h, w = self.size(*mask.shape[:2])
        if mask.shape[:2] == (h, w):
            return mask
        return as_hwc(np.array(Image.fromarray(mask[:, :, 0]).resize((w, h), Image.NEAREST)))


class ResizeTo(Rescale):
    """A fixed (height, width): the reference's `resize`."""

    def __init__(self, height: int, width: int, p: float = 1.0):
        super().__init__(p=p)
        self.height, self.width = height, width

    def size(self, h: int, w: int) -> Tuple[int, int]:
        return self.height, self.width


class ScaleWidth(Rescale):
    """Width to `width`, height by the aspect ratio but at least `min_height` (the reference's __scale_width,
    whose min_height is crop_size so that a crop always fits)."""

    def __init__(self, width: int, min_height: int, p: float = 1.0):
        super().__init__(p=p)
        self.width, self.min_height = width, min_height

    def size(self, h: int, w: int) -> Tuple[int, int]:
        if w == self.width and h >= self.min_height:
            return h, w
        return int(max(self.width * h / w, self.min_height)), self.width


class RoundToMultiple(Rescale):
    """H and W to the nearest multiple of `base` (the reference's __make_power_2); keeps non-square images."""

    def __init__(self, base: int, p: float = 1.0):
        super().__init__(p=p)
        self.base = base
        self.said = False  # the first resize is told, once per data set (and loader worker)

    def size(self, h: int, w: int) -> Tuple[int, int]:
        out = tuple(max(self.base, int(round(s / self.base)) * self.base) for s in (h, w))
        if out != (h, w) and not self.said:
            self.said = True
            warnings.warn(f"images of {w}x{h} are resized to {out[1]}x{out[0]}: sides must be multiples of "
                          f"{self.base} (data.size_multiple, raised to the generator's multiple)")
        return out


def geometry(cfg: DataConfig, train: bool) -> A.Compose:
    """The shared geometric pipeline: targets `image` (source) and `target` get identical parameters."""
    c, load = cfg.crop_size, cfg.load_size
    crop = A.RandomCrop(c, c) if train else A.CenterCrop(c, c)
    steps = {
        "resize_and_crop": [ResizeTo(load, load), crop] if train else [ResizeTo(c, c)],
        "crop": [crop],
        "scale_width": [ScaleWidth(load if train else c, c)],
        "scale_width_and_crop": [ScaleWidth(load if train else c, c), crop],
        "none": [],
    }[cfg.preprocess]
    # the reference rounds only for `none`; after the other modes it is a no-op unless the sizes are not
    # multiples of the network's (e.g. scale_width heights), which the generator could not take
    steps.append(RoundToMultiple(cfg.size_multiple))
    if train and cfg.flip:
        steps.append(A.HorizontalFlip(p=0.5))
    return A.Compose(steps, additional_targets={"target": "image", "labels": "mask"})


def source_colour(cfg: DataConfig, channels: int) -> Optional[A.BasicTransform]:
    """Brightness/contrast(/saturation) jitter of strength `color_jitter`, for the source image only."""
    if cfg.color_jitter <= 0:
        return None
    j = cfg.color_jitter
    if channels == 3:
        return A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=0.0, p=1.0)
    return A.RandomBrightnessContrast(brightness_limit=j, contrast_limit=j, p=1.0)


def one_hot(labels: np.ndarray, label_nc: int) -> torch.Tensor:
    """(H, W, 1) class indices -> float32 (label_nc, H, W) of 0 and 1 (pSp's ToOneHot: not rescaled to [-1, 1])."""
    idx = torch.from_numpy(np.ascontiguousarray(labels[:, :, 0]).astype(np.int64))
    return torch.nn.functional.one_hot(idx, label_nc).permute(2, 0, 1).float()


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, C) -> float32 (C, H, W) in [-1, 1]."""
    chw = np.array(img.transpose(2, 0, 1), dtype=np.float32)  # a contiguous, writable copy
    return torch.from_numpy(chw).div_(127.5).sub_(1.0)


class PairTransform:
    """Geometry on both images, an optional function making the source from the transformed target
    (degradations), colour on the source, then tensors in [-1, 1]."""

    def __init__(self, cfg: DataConfig, train: bool):
        check_preprocess(cfg)
        self.cfg, self.train = cfg, train
        self.geometry = geometry(cfg, train)
        self.colour = source_colour(cfg, cfg.input_nc) if train else None

    def _reseed(self) -> None:
        # albumentations keeps its own generators; a Compose built in the main process and forked into loader
        # workers would repeat the same crops and flips in every worker. One shared stream per sample, drawn from
        # torch (seeded per worker by the DataLoader and by pl.seed_everything), avoids that. Sharing one stream
        # matters: per-transform seeds (Compose(seed=...)) would give crop and flip the same first draw.
        seed = int(torch.randint(0, SEED_MAX, (), dtype=torch.int64))
        self.geometry.set_random_state(np.random.default_rng(seed), random.Random(seed))
        if self.colour is not None:
            self.colour.set_random_state(np.random.default_rng(seed + 1), random.Random(seed + 1))

    def _check_crop(self, img: np.ndarray, name: str) -> None:
        h, w = img.shape[:2]
        if self.cfg.preprocess == "crop" and (h < self.cfg.crop_size or w < self.cfg.crop_size):
            raise DataError(f"{name}: image is {w}x{h}, smaller than data.crop_size {self.cfg.crop_size} "
                            f"(data.preprocess 'crop' does not resize; use 'resize_and_crop' or 'none')")

    def __call__(self, a: Optional[np.ndarray], b: np.ndarray,
                 make_source: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                 name: str = "image") -> Tuple[torch.Tensor, torch.Tensor]:
        """a: source (H, W, input_nc) uint8, or None when `make_source(target)` makes it; b: target."""
        if self.train:
            self._reseed()
        self._check_crop(b, name)
        if a is None:
            b = as_hwc(self.geometry(image=b)["image"])
            a = make_source(b)
        elif self.cfg.label_nc > 0:  # a label map: geometry as a mask (nearest), then one-hot
            out = self.geometry(image=b, labels=a)
            return one_hot(as_hwc(out["labels"]), self.cfg.label_nc), to_tensor(as_hwc(out["image"]))
        else:
            out = self.geometry(image=a, target=b)
            a, b = as_hwc(out["image"]), as_hwc(out["target"])
        if self.colour is not None:
            a = as_hwc(self.colour(image=a)["image"])
        return to_tensor(a), to_tensor(b)
