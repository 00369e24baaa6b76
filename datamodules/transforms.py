"""Preprocessing as in the reference pix2pix/CycleGAN code, with albumentations.

The same random geometry (resize, crop, flip) goes to both images of a pair; colour changes go to the source only.
Evaluation is deterministic: no flip, and the reference's test-time sizes (resize to crop_size, or a centre crop).
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import albumentations as A
import cv2
import numpy as np
import torch

from datamodules.config import DataConfig

PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")


def check_preprocess(cfg: DataConfig) -> None:
    if cfg.preprocess not in PREPROCESS:
        raise ValueError(f"data.preprocess: expected one of {list(PREPROCESS)}, got '{cfg.preprocess}'")
    if cfg.crop_size < 1 or cfg.load_size < 1 or cfg.size_multiple < 1:
        raise ValueError("data.load_size, data.crop_size and data.size_multiple must be positive")
    if cfg.preprocess in ("resize_and_crop", "scale_width_and_crop") and cfg.crop_size > cfg.load_size:
        raise ValueError(f"data.crop_size ({cfg.crop_size}) must not exceed data.load_size ({cfg.load_size})")


def _resize(h: int, w: int) -> A.BasicTransform:
    return A.Resize(h, w, interpolation=cv2.INTER_CUBIC)


class ScaleWidth(A.DualTransform):
    """Width to `width`, height by aspect ratio but at least `min_height` (the reference's scale_width)."""

    def __init__(self, width: int, min_height: int, p: float = 1.0):
        super().__init__(p=p)
        self.width, self.min_height = width, min_height

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        h, w = img.shape[:2]
        if w == self.width and h >= self.min_height:
            return img
        new_h = int(max(self.width * h / w, self.min_height))
        out = cv2.resize(img, (self.width, new_h), interpolation=cv2.INTER_CUBIC)
        return out[:, :, None] if out.ndim == 2 else out


class RoundToMultiple(A.DualTransform):
    """Resize H and W to the nearest multiple of `base` (the reference's make_power_2); keeps non-square images."""

    def __init__(self, base: int, p: float = 1.0):
        super().__init__(p=p)
        self.base = base

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        h, w = img.shape[:2]
        nh, nw = (max(self.base, int(round(s / self.base)) * self.base) for s in (h, w))
        if (nh, nw) == (h, w):
            return img
        out = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_CUBIC)
        return out[:, :, None] if out.ndim == 2 else out


def geometry(cfg: DataConfig, train: bool) -> A.Compose:
    """The shared geometric pipeline: targets `image` (source) and `target` get identical parameters."""
    c, load = cfg.crop_size, cfg.load_size
    crop = A.RandomCrop(c, c) if train else A.CenterCrop(c, c)
    steps = {
        "resize_and_crop": [_resize(load, load), crop] if train else [_resize(c, c)],
        "crop": [crop],
        "scale_width": [ScaleWidth(load if train else c, c)],
        "scale_width_and_crop": [ScaleWidth(load if train else c, c), crop],
        "none": [],
    }[cfg.preprocess]
    steps = steps + [RoundToMultiple(cfg.size_multiple)]
    if train and cfg.flip:
        steps.append(A.HorizontalFlip(p=0.5))
    return A.Compose(steps, additional_targets={"target": "image"})


def source_colour(cfg: DataConfig, channels: int) -> Optional[A.BasicTransform]:
    if cfg.color_jitter <= 0:
        return None
    j = cfg.color_jitter
    if channels == 3:
        return A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=0.0, p=1.0)
    return A.RandomBrightnessContrast(brightness_limit=j, contrast_limit=j, p=1.0)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, C) -> float32 (C, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)


def as_hwc(img: np.ndarray) -> np.ndarray:
    return img[:, :, None] if img.ndim == 2 else img


class PairTransform:
    """Geometry on both images, an optional function making the source from the target (degradations), colour on
    the source, then tensors in [-1, 1]."""

    def __init__(self, cfg: DataConfig, train: bool):
        check_preprocess(cfg)
        self.geometry = geometry(cfg, train)
        self.colour = source_colour(cfg, cfg.input_nc) if train else None

    def __call__(self, a: Optional[np.ndarray], b: np.ndarray,
                 make_source: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        if a is None:
            b = as_hwc(self.geometry(image=b)["image"])
            a = make_source(b)
        else:
            out = self.geometry(image=a, target=b)
            a, b = as_hwc(out["image"]), as_hwc(out["target"])
        if self.colour is not None:
            a = as_hwc(self.colour(image=a)["image"])
        return to_tensor(a), to_tensor(b)
