"""conv2d_resample: 2-D convolution with optional up/downsampling by FIR filtering (StyleGAN2-ADA semantics).

Written as its definition (pad + zero-insertion upsample with f, convolve with w, filter with f and decimate),
which the fused fast paths of other implementations compute in a different order with the same result.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from priors.ops.upfirdn2d import IntPair, filter_size, parse_padding, upfirdn2d


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1, down: int = 1,
                    padding: IntPair = 0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False) -> torch.Tensor:
    """x (N, C_in, H, W), w (C_out, C_in / groups, kh, kw); f the resampling filter (used when up or down > 1).

    flip_weight True = correlation (as torch's conv2d), False = true convolution. Output size is that of
    conv2d(padding) scaled by up / down.
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d_resample: expected x (N, C, H, W) and w (O, I, kh, kw), got {tuple(x.shape)} "
                         f"and {tuple(w.shape)}")
    if x.shape[1] != w.shape[1] * groups:
        raise ValueError(f"conv2d_resample: x has {x.shape[1]} channels but w expects {w.shape[1]} x {groups} groups")
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise ValueError(f"conv2d_resample: up and down must be integers >= 1, got up={up}, down={down}")
    if (up > 1 or down > 1) and f is None:
        raise ValueError("conv2d_resample: resampling (up or down > 1) needs a filter f")
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    if up > 1:  # the filter's own padding for upsampling
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:  # ... and for downsampling
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], gain=up**2, flip_filter=flip_filter,
                  impl="ref")
    x = F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl="ref")
    return x
