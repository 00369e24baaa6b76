"""Differentiable degradations for inversion through a degradation (`translate invert --degrade`, PULSE-like).

The data modules degrade uint8 images with PIL (datamodules/degrade.py); inversion needs the same operations in
torch, differentiable, on (N, 3, H, W) renders in [-1, 1]:
- `downsample:F`  bicubic downsampling by F (antialiased, area-like when shrinking, as PIL's bicubic);
- `blur:SIGMA`    Gaussian blur, std SIGMA pixels (kernel 2 * ceil(3 SIGMA) + 1, reflect padding);
- `grayscale`     the luma (ITU-R 601, as PIL's "L"), replicated to 3 channels;
- `jpeg:Q`        JPEG's lossy step approximated: RGB -> YCbCr, 8x8 block DCT, quantisation with the standard
                  tables scaled to quality Q, rounding with a straight-through gradient, and back (no chroma
                  subsampling, no entropy coding, which is lossless).
`Degradation.target` brings an input image to what the degraded render is compared with: the input itself when
its size is the degraded size, else the input resized there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from safeio.errors import ConfigError

NAMES = ("downsample", "blur", "grayscale", "jpeg")
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, PIL's convert("L")
JPEG_LUMA_Q = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
               14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
               49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]  # JPEG Annex K, table K.1
JPEG_CHROMA_Q = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
                 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32  # table K.2
BLOCK = 8


@dataclass(frozen=True)
class Degradation:
    name: str
    value: Optional[float] = None  # factor, sigma or quality

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value:g}"

    def size(self, full: int) -> int:
        """The side of a degraded render of side `full`."""
        return full // int(self.value) if self.name == "downsample" else full

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.name == "downsample":
            s = self.size(img.shape[-1])
            return F.interpolate(img, size=(s, s), mode="bicubic", align_corners=False, antialias=True)
        if self.name == "blur":
            return gaussian_blur(img, float(self.value))
        if self.name == "grayscale":
            return grayscale(img)
        return jpeg_approx(img, float(self.value))

    def target(self, x: torch.Tensor, full: int) -> torch.Tensor:
        """The input batch as the degraded render of a `full`-px image is compared with."""
        s = self.size(full)
        if x.shape[-2:] == (s, s):
            return x
        return F.interpolate(x, size=(s, s), mode="bicubic" if x.shape[-1] < s else "area",
                             **({"align_corners": False} if x.shape[-1] < s else {})).clamp(-1, 1)


def parse_degradation(text: Optional[str]) -> Optional[Degradation]:
    """'downsample:8', 'blur:2', 'grayscale', 'jpeg:30' -> Degradation; None -> None."""
    if text is None:
        return None
    name, _, arg = text.partition(":")
    if name not in NAMES:
        raise ConfigError(f"--degrade: expected one of {', '.join(NAMES)} (e.g. downsample:8), got '{text}'",
                          key="--degrade")
    if name == "grayscale":
        if arg:
            raise ConfigError(f"--degrade grayscale takes no value, got '{text}'", key="--degrade")
        return Degradation(name)
    try:
        value = float(arg)
    except ValueError:
        raise ConfigError(f"--degrade {name}: expected {name}:VALUE (e.g. downsample:8, blur:2, jpeg:30), "
                          f"got '{text}'", key="--degrade") from None
    if name == "downsample" and (value != int(value) or not 2 <= value <= 32):
        raise ConfigError(f"--degrade downsample: expected an integer factor 2..32, got '{arg}'", key="--degrade")
    if name == "blur" and not 0 < value <= 32:
        raise ConfigError(f"--degrade blur: expected a sigma in (0, 32] pixels, got '{arg}'", key="--degrade")
    if name == "jpeg" and (value != int(value) or not 1 <= value <= 100):
        raise ConfigError(f"--degrade jpeg: expected an integer quality 1..100, got '{arg}'", key="--degrade")
    return Degradation(name, value)


def check_size(d: Degradation, full: int) -> None:
    if d.name == "downsample" and full % int(d.value):
        raise ConfigError(f"--degrade {d}: the prior's {full}-px output is not divisible by {int(d.value)}",
                          key="--degrade")
    if d.name == "jpeg" and full % BLOCK:
        raise ConfigError(f"--degrade {d}: JPEG works on 8x8 blocks; the prior's {full}-px output is not a multiple",
                          key="--degrade")


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding (the radius is capped below the image side)."""
    radius = min(max(1, math.ceil(3 * sigma)), img.shape[-1] - 1, img.shape[-2] - 1)
    x = torch.arange(-radius, radius + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c = img.shape[1]
    out = F.conv2d(F.pad(img, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1),
                   groups=c)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1),
                    groups=c)


def grayscale(img: torch.Tensor) -> torch.Tensor:
    luma = sum(w * img[:, i:i + 1] for i, w in enumerate(LUMA))
    return luma.expand(-1, 3, -1, -1)


def jpeg_quant_table(quality: float, table, device: Optional[torch.device] = None) -> torch.Tensor:
    """libjpeg's quality scaling of a base table: 5000 / q below 50, 200 - 2 q above, clamped to 1..255."""
    q = int(quality)
    scale = 5000 / q if q < 50 else 200 - 2 * q
    t = torch.tensor(table, dtype=torch.float32, device=device)
    return ((t * scale + 50) // 100).clamp(1, 255).view(BLOCK, BLOCK)


def dct_matrix(n: int = BLOCK, device: Optional[torch.device] = None) -> torch.Tensor:
    """The orthonormal DCT-II matrix D: coefficients = D @ block @ D^T."""
    k = torch.arange(n, dtype=torch.float64, device=device)
    d = torch.cos(math.pi * (2 * k[None] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d.float()


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding forward, the identity backward (straight-through)."""
    return x + (torch.round(x) - x).detach()


def jpeg_approx(img: torch.Tensor, quality: float) -> torch.Tensor:
    """JPEG's quantisation of an (N, 3, H, W) batch in [-1, 1] (H, W multiples of 8), differentiable through a
    straight-through rounding."""
    n, _, h, w = img.shape
    rgb = (img.clamp(-1, 1) + 1) * 127.5
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    ycc = torch.stack([0.299 * r + 0.587 * g + 0.114 * b,
                       -0.168736 * r - 0.331264 * g + 0.5 * b,
                       0.5 * r - 0.418688 * g - 0.081312 * b], 1)
    ycc[:, 0] = ycc[:, 0] - 128
    blocks = ycc.unfold(2, BLOCK, BLOCK).unfold(3, BLOCK, BLOCK)  # (N, 3, H/8, W/8, 8, 8)
    d = dct_matrix(device=img.device).to(img)  # made on the images' device, as the tables
    coef = d @ blocks @ d.T
    q = torch.stack([jpeg_quant_table(quality, JPEG_LUMA_Q, img.device)]
                    + [jpeg_quant_table(quality, JPEG_CHROMA_Q, img.device)] * 2)
    q = q.to(img).view(1, 3, 1, 1, BLOCK, BLOCK)
    blocks = d.T @ (round_ste(coef / q) * q) @ d
    ycc = blocks.permute(0, 1, 2, 4, 3, 5).reshape(n, 3, h, w)  # (N, 3, H/8, 8, W/8, 8) -> (N, 3, H, W)
    y, cb, cr = ycc[:, 0] + 128, ycc[:, 1], ycc[:, 2]
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return rgb / 127.5 - 1
