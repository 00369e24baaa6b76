"""Degradations that make a (source, target) pair from one clean image: super-resolution, sketches, colorization,
deblurring, JPEG artefact removal, denoising. Each is a small function of (uint8 HxWxC image, rng, config)."""
from __future__ import annotations

import io
from typing import Callable, Dict

import numpy as np
from PIL import Image, ImageFilter

from datamodules.config import DegradationConfig

MAX_FACTOR = 32


def _pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)


def _arr(img: Image.Image, like: np.ndarray) -> np.ndarray:
    a = np.asarray(img, dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a


def downsample(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    """Bicubic down by a factor drawn from `factors`, then (resize_back) bicubic up to the original size."""
    factor = int(rng.choice(cfg.factors))
    h, w = img.shape[:2]
    small = _pil(img).resize((max(1, w // factor), max(1, h // factor)), Image.BICUBIC)
    if cfg.resize_back:
        small = small.resize((w, h), Image.BICUBIC)
    return _arr(small, img)


def grayscale(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    gray = np.asarray(_pil(img).convert("L"), dtype=np.uint8)[:, :, None]
    return np.repeat(gray, img.shape[2], axis=2)


def blur(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    sigma = float(rng.uniform(*cfg.blur_sigma))
    return _arr(_pil(img).filter(ImageFilter.GaussianBlur(radius=sigma)), img)


def jpeg(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    buf = io.BytesIO()
    _pil(img).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return _arr(Image.open(buf).convert("L" if img.shape[2] == 1 else "RGB"), img)


def noise(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    sigma = float(rng.uniform(*cfg.noise_sigma))
    noisy = img.astype(np.float32) / 255.0 + rng.normal(0.0, sigma, img.shape).astype(np.float32)
    return np.clip(noisy * 255.0 + 0.5, 0, 255).astype(np.uint8)


def sketch(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    """Black edge lines on white (kornia's Canny on the luminance)."""
    import kornia
    import torch

    gray = torch.from_numpy(np.asarray(_pil(img).convert("L"), dtype=np.float32) / 255.0)[None, None]
    _, edges = kornia.filters.canny(gray, low_threshold=cfg.sketch_threshold, high_threshold=2 * cfg.sketch_threshold)
    lines = (1.0 - edges[0, 0]).clamp(0, 1).numpy()
    out = (lines * 255.0 + 0.5).astype(np.uint8)[:, :, None]
    return np.repeat(out, img.shape[2], axis=2)


DEGRADATIONS: Dict[str, Callable[[np.ndarray, np.random.Generator, DegradationConfig], np.ndarray]] = {
    "downsample": downsample,
    "sketch": sketch,
    "grayscale": grayscale,
    "blur": blur,
    "jpeg": jpeg,
    "noise": noise,
}


def check_degradation(cfg: DegradationConfig) -> None:
    if cfg.name not in DEGRADATIONS:
        raise ValueError(f"data.degradation.name: expected one of {sorted(DEGRADATIONS)}, got '{cfg.name}'")
    if cfg.name == "downsample":
        bad = [f for f in cfg.factors if not 2 <= int(f) <= MAX_FACTOR]
        if not cfg.factors or bad:
            raise ValueError(f"data.degradation.factors: expected factors in 2..{MAX_FACTOR}, got {list(cfg.factors)}")
