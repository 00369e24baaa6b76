"""Modulated convolution with weight demodulation (StyleGAN2, Karras et al. 2020, eq. 1-3)."""
from __future__ import annotations

from typing import Optional

import torch

from priors.ops.conv2d_resample import conv2d_resample
from priors.ops.upfirdn2d import IntPair


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: Optional[torch.Tensor] = None, up: int = 1, down: int = 1, padding: IntPair = 0,
                     resample_filter: Optional[torch.Tensor] = None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool = True) -> torch.Tensor:
    """x (N, I, H, W), weight (O, I, kh, kw), styles (N, I) -> (N, O, H', W').

    w'_ijk = s_i * w_ijk, then (demodulate) w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + 1e-8). fused_modconv runs one
    grouped convolution with per-sample weights; otherwise the styles scale activations (same result).
    """
    n = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != in_c or styles.shape != (n, in_c):
        raise ValueError(f"modulated_conv2d: expected x (N, {in_c}, H, W) and styles (N, {in_c}), got "
                         f"{tuple(x.shape)} and {tuple(styles.shape)}")
    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # (N, O, I, kh, kw)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # (N, O)
    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        return x + noise.to(x.dtype) if noise is not None else x
    if demodulate:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])  # the batch becomes groups of one grouped convolution
    x = conv2d_resample(x, w.reshape(-1, in_c, kh, kw).to(x.dtype), f=resample_filter, up=up, down=down,
                        padding=padding, groups=n, flip_weight=flip_weight)
    x = x.reshape(n, -1, *x.shape[2:])
    return x + noise.to(x.dtype) if noise is not None else x
