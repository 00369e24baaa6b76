"""Degradations that make a (source, target) pair from one clean image: super-resolution, sketches, colorization,
deblurring, JPEG artefact removal, denoising. Each is a small function of (uint8 HxWxC image, rng, config)."""
from __future__ import annotations

import io
from typing import Callable, Dict

import numpy as np
from PIL import Image, ImageFilter

from datamodules.config import DegradationConfig
from safeio.errors import ConfigError

MIN_FACTOR, MAX_FACTOR = 1, 32  # downsample factors allowed (1: the image itself, as in pSp's 1,2,4,8,16,32)


def _pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)


def _hwc(img: Image.Image) -> np.ndarray:
    a = np.array(img, dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a


def downsample(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    """Super-resolution input: bicubic down (PIL's bicubic averages like an area filter when shrinking) by a factor
    drawn from `factors`, then, with `resize_back`, bicubic up to the target's size; else the small image."""
    factor = int(rng.choice(cfg.factors))
    h, w = img.shape[:2]
    small = _pil(img).resize((max(1, w // factor), max(1, h // factor)), Image.BICUBIC)
    if cfg.resize_back:
        small = small.resize((w, h), Image.BICUBIC)
    return _hwc(small)


def psp_bicubic_kernel(factor: int, a: float = -0.5):
    """pSp's 1-D downsampling kernel: 4 * factor taps of the cubic convolution kernel (a = -0.5), sampled at
    (i - 2 factor + 0.5) / factor and normalised to sum 1 (float32, as pSp computes it)."""
    import torch

    x = ((torch.arange(4 * factor, dtype=torch.float32) - 2 * factor + 0.5) / factor).abs()
    near = (a + 2) * x**3 - (a + 3) * x**2 + 1
    far = a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    k = torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))
    return k / k.sum()


def psp_downsample_image(img: np.ndarray, factor: int) -> np.ndarray:
    """pSp's super-resolution downsampling of a uint8 HxWxC image: the kernel above as a separable strided
    convolution over [0, 1] values with mirror (reflect) padding of 4f - f taps (the smaller half first), clamped
    to [0, 1] and truncated to uint8 (torchvision's ToPILImage). Factor 1 is not the identity: it shifts the image by
    half a pixel, as in pSp."""
    import torch
    import torch.nn.functional as F

    h, w, c = img.shape
    taps, pad = 4 * factor, 3 * factor
    if pad >= min(h, w):
        raise ConfigError(f"data.degradation: downsample_psp by {factor} mirrors {pad} pixels, which needs an image "
                          f"larger than {pad} px on each side; got {w}x{h}", key="data.degradation")
    x = torch.tensor(img).permute(2, 0, 1)[None].float() / 255.0  # a copy: read-only arrays (np.asarray(PIL)) too
    k = psp_bicubic_kernel(factor)
    before, after = pad // 2, pad - pad // 2
    x = F.conv2d(F.pad(x, (0, 0, before, after), mode="reflect"), k.view(1, 1, taps, 1).expand(c, 1, taps, 1),
                 stride=(factor, 1), groups=c)
    x = F.conv2d(F.pad(x, (before, after, 0, 0), mode="reflect"), k.view(1, 1, 1, taps).expand(c, 1, 1, taps),
                 stride=(1, factor), groups=c)
    return (x[0].clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy()  # truncation, not rounding


def downsample_psp(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    """Super-resolution input exactly as pSp makes it (its SuperResTransforms), for training encoders comparable
    to its published SR models: pSp's bicubic downsampling (above) by a factor drawn from `factors`, then, with
    `resize_back`, PIL bilinear up to the target's size."""
    factor = int(rng.choice(cfg.factors))
    small = psp_downsample_image(img, factor)
    if not cfg.resize_back:
        return small
    return _hwc(_pil(small).resize((img.shape[1], img.shape[0]), Image.BILINEAR))


def grayscale(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    """Colorization input: the luma, replicated to the image's channel count."""
    gray = _hwc(_pil(img).convert("L"))
    return np.repeat(gray, img.shape[2], axis=2)


def blur(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    """Deblurring input: Gaussian blur, sigma (pixels) drawn from `blur_sigma`."""
    sigma = float(rng.uniform(*cfg.blur_sigma))
    return _hwc(_pil(img).filter(ImageFilter.GaussianBlur(radius=sigma)))  # PIL's radius is the std dev


def jpeg(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    """JPEG artefact removal input: re-encoded by PIL at a quality drawn from `jpeg_quality`."""
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    buf = io.BytesIO()
    _pil(img).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return _hwc(decoded.convert("L" if img.shape[2] == 1 else "RGB"))


def noise(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    """Denoising input: additive Gaussian noise, std drawn from `noise_sigma` (in [0, 1] units), clipped."""
    sigma = float(rng.uniform(*cfg.noise_sigma))
    noisy = img.astype(np.float32) / 255.0 + rng.normal(0.0, sigma, img.shape).astype(np.float32)
    return np.clip(noisy * 255.0 + 0.5, 0, 255).astype(np.uint8)


def sketch(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    """Sketch-to-image input: black Canny edge lines (kornia, on the luma) on a white background."""
    import kornia  # the training stack only: io.py and the inference API never come here
    import torch

    gray = torch.from_numpy(np.asarray(_pil(img).convert("L"), dtype=np.float32) / 255.0)[None, None]  # (1, 1, H, W)
    _, edges = kornia.filters.canny(gray, low_threshold=cfg.sketch_threshold, high_threshold=2 * cfg.sketch_threshold)
    lines = (1.0 - edges[0, 0]).clamp(0, 1).numpy()
    out = (lines * 255.0 + 0.5).astype(np.uint8)[:, :, None]
    return np.repeat(out, img.shape[2], axis=2)


def none(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    """Inversion / encoding: the source is the target itself."""
    return img.copy()


def flip(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    """pSp's frontalization trick: the source is the target mirrored with probability 0.5. With `data.flip` (which
    mirrors both) the two are mirrored independently at random."""
    return img[:, ::-1].copy() if rng.random() < 0.5 else img.copy()


DEGRADATIONS: Dict[str, Callable[[np.ndarray, np.random.Generator, DegradationConfig], np.ndarray]] = {
    "downsample": downsample,
    "downsample_psp": downsample_psp,
    "sketch": sketch,
    "grayscale": grayscale,
    "blur": blur,
    "jpeg": jpeg,
    "noise": noise,
    "none": none,
    "flip": flip,
}


def _check_range(key: str, values, low: float, high: float) -> None:
    vals = list(values)
    if len(vals) != 2 or not low <= vals[0] <= vals[1] <= high:
        raise ConfigError(f"data.degradation.{key}: expected [min, max] with {low} <= min <= max <= {high}, got {vals}",
                          key=f"data.degradation.{key}")


def check_degradation(cfg: DegradationConfig) -> None:
    """Validate the fields the chosen degradation uses; messages name the key."""
    if cfg.name not in DEGRADATIONS:
        raise ConfigError(f"data.degradation.name: expected one of {list(DEGRADATIONS)}, got '{cfg.name}'",
                          key="data.degradation.name")
    if cfg.name in ("downsample", "downsample_psp"):
        bad = [f for f in cfg.factors if not MIN_FACTOR <= int(f) <= MAX_FACTOR]
        if not cfg.factors or bad:
            raise ConfigError(f"data.degradation.factors: expected integers in {MIN_FACTOR}..{MAX_FACTOR}, "
                              f"got {list(cfg.factors)}", key="data.degradation.factors")
    elif cfg.name == "blur":
        _check_range("blur_sigma", cfg.blur_sigma, 0.0, float("inf"))
    elif cfg.name == "jpeg":
        _check_range("jpeg_quality", cfg.jpeg_quality, 1, 100)
    elif cfg.name == "noise":
        _check_range("noise_sigma", cfg.noise_sigma, 0.0, float("inf"))
    elif cfg.name == "sketch" and not 0.0 < cfg.sketch_threshold < 0.5:
        raise ConfigError(f"data.degradation.sketch_threshold: expected a value in (0, 0.5) (the high threshold "
                          f"is twice it), got {cfg.sketch_threshold}", key="data.degradation.sketch_threshold")
