"""Differentiable augmentation (DiffAugment; Zhao et al. 2020) for GANs trained on small data sets.

The same random transform family is applied to real and generated images before the discriminator sees them, and
every transform is differentiable in the image (gathers and products only), so G's gradients pass through it and R1
can differentiate D(augment(x)) twice. Plain PyTorch; images in [-1, 1], shape (N, C, H, W).
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import torch
from safeio.errors import ConfigError

TRANSLATION_RATIO = 0.125  # largest shift, as a fraction of the image side (DiffAugment paper)
CUTOUT_RATIO = 0.5  # side of the erased square, as a fraction of the image side (DiffAugment paper)


def _uniform(x: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, dtype=x.dtype, device=x.device)


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5), per image."""
    x = x + (_uniform(x, 1, 1, 1) - 0.5)
    mean_c = x.mean(dim=1, keepdim=True)
    x = (x - mean_c) * (_uniform(x, 1, 1, 1) * 2) + mean_c
    mean_all = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean_all) * (_uniform(x, 1, 1, 1) + 0.5) + mean_all


def translation(x: torch.Tensor, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each image by a random whole number of pixels (up to ratio * side) in x and y; zeros fill the gap."""
    n, _, h, w = x.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - dy + 1  # +1: index into the 1-pixel zero border
    cols = torch.arange(w, device=x.device).view(1, 1, w) - dx + 1
    rows, cols = rows.clamp(0, h + 1).expand(n, h, w), cols.clamp(0, w + 1).expand(n, h, w)
    padded = torch.nn.functional.pad(x, [1, 1, 1, 1])  # (N, C, H + 2, W + 2)
    batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (N, C, H, W)


def cutout(x: torch.Tensor, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Zero a random square of side ratio * image side in each image (it may stick out of the image)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    y0 = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device) - ch // 2  # top edge, may be < 0
    x0 = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device) - cw // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= y0) & (ys < y0 + ch) & (xs >= x0) & (xs < x0 + cw)  # (N, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


POLICIES: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


def check_policy(policy: Sequence[str], key: str = "model.augment") -> None:
    unknown = [p for p in policy if p not in POLICIES]
    if unknown:
        raise ConfigError(f"{key}: unknown augmentations {unknown}; expected some of {list(POLICIES)}", key=key)


def diff_augment(x: torch.Tensor, policy: Sequence[str]) -> torch.Tensor:
    """Apply the transforms named in `policy`, in order (the paper's order is color, translation, cutout)."""
    if x.ndim != 4:
        raise ValueError(f"diff_augment: expected an image batch (N, C, H, W), got {tuple(x.shape)}")
    for name in policy:
        x = POLICIES[name](x)
    return x
