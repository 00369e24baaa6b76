"""Modulated convolution with weight demodulation (StyleGAN2, Karras et al. 2020, eq. 1-3)."""
from __future__ import annotations

from typing import Optional

import torch

from priors.ops.conv2d_resample import conv2d_resample
from priors.ops.upfirdn2d import IntPair

DEMOD_EPS = 1e-8  # epsilon of eq. 3


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: Optional[torch.Tensor] = None, up: int = 1, down: int = 1, padding: IntPair = 0,
                     resample_filter: Optional[torch.Tensor] = None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool = True) -> torch.Tensor:
    """x (N, I, H, W), weight (O, I, kh, kw), styles (N, I) -> (N, O, H', W') (+ noise, broadcast).

    w'_oik = s_i * w_oik (eq. 1), demodulated w''_oik = w'_oik / sqrt(sum_ik w'_oik^2 + eps) (eq. 3). fused_modconv
    runs one grouped convolution with per-sample weights; otherwise the styles scale the activations before and the
    demodulation coefficients after a shared convolution (the same result up to rounding). up, down, padding,
    resample_filter and flip_weight as in conv2d_resample.
    """
    if not isinstance(weight, torch.Tensor) or weight.ndim != 4:
        raise ValueError(f"modulated_conv2d: expected weight (O, I, kh, kw), got "
                         f"{tuple(getattr(weight, 'shape', ()))}")
    out_c, in_c, kh, kw = weight.shape
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != in_c:
        raise ValueError(f"modulated_conv2d: expected x (N, {in_c}, H, W) for weight {tuple(weight.shape)}, got "
                         f"{tuple(getattr(x, 'shape', ()))}")
    n = x.shape[0]
    if not isinstance(styles, torch.Tensor) or tuple(styles.shape) != (n, in_c):
        raise ValueError(f"modulated_conv2d: expected styles ({n}, {in_c}), got "
                         f"{tuple(getattr(styles, 'shape', ()))}")
    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, in_c, 1, 1)  # (N, O, I, kh, kw)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + DEMOD_EPS).rsqrt()  # (N, O)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, in_c, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(n, out_c, 1, 1)
        return x + noise.to(x.dtype) if noise is not None else x

    if demodulate:
        w = w * dcoefs.reshape(n, out_c, 1, 1, 1)
    x = x.reshape(1, n * in_c, *x.shape[2:])  # the batch becomes the groups of one grouped convolution
    x = conv2d_resample(x, w.reshape(n * out_c, in_c, kh, kw).to(x.dtype), f=resample_filter, up=up, down=down,
                        padding=padding, groups=n, flip_weight=flip_weight)
    x = x.reshape(n, out_c, *x.shape[2:])
    return x + noise.to(x.dtype) if noise is not None else x
