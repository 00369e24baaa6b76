"""conv2d_resample: 2-D convolution with optional up/downsampling by FIR filtering (StyleGAN2-ADA semantics).

Defined as: upsample x by zero insertion, pad, filter with f (gain up^2), convolve with w, filter with f and keep
every `down`-th sample, all padding applied once at the start. Filtering and convolving commute, so the cheaper
orders below compute the same thing: a transposed strided convolution for upsampling, a strided convolution for
downsampling, and 1x1 convolutions at the lower resolution.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from priors.ops.upfirdn2d import IntPair, filter_size, parse_padding, upfirdn2d


def _conv(x: torch.Tensor, w: torch.Tensor, groups: int, flip_weight: bool, stride: int = 1,
          padding=0) -> torch.Tensor:
    """conv2d as correlation (flip_weight) or as true convolution."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _conv_transpose(x: torch.Tensor, w: torch.Tensor, groups: int, flip_weight: bool, stride: int,
                    crop) -> torch.Tensor:
    """Zero-insertion upsampling followed by a 'full' convolution with w (as correlation when flip_weight), as one
    transposed convolution; `crop` (y, x) drops that many outputs on each side."""
    out_c, in_c_per_group, kh, kw = w.shape
    w = w.reshape(groups, out_c // groups, in_c_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * in_c_per_group, out_c // groups, kh, kw)  # (I, O / groups, kh, kw)
    if flip_weight and (kh > 1 or kw > 1):  # a transposed convolution is a true convolution
        w = w.flip([2, 3])
    return F.conv_transpose2d(x, w, stride=stride, padding=crop, groups=groups)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1, down: int = 1,
                    padding: IntPair = 0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False) -> torch.Tensor:
    """x (N, C_in, H, W), w (C_out, C_in / groups, kh, kw) -> (N, C_out, H', W').

    f: the resampling filter from setup_filter (needed when up or down > 1); padding: int, (x, y) or
    (x0, x1, y0, y1) with respect to the upsampled image; flip_weight: True = correlation (as torch's conv2d),
    False = true convolution; flip_filter likewise for f.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not isinstance(w, torch.Tensor) or w.ndim != 4:
        raise ValueError(f"conv2d_resample: expected x (N, C, H, W) and w (O, I, kh, kw), got "
                         f"{tuple(getattr(x, 'shape', ()))} and {tuple(getattr(w, 'shape', ()))}")
    if not (isinstance(groups, (int, torch.SymInt)) and groups >= 1 and w.shape[0] % groups == 0):
        raise ValueError(f"conv2d_resample: groups must be an int >= 1 dividing {w.shape[0]} output channels, "
                         f"got {groups}")
    if x.shape[1] != w.shape[1] * groups:
        raise ValueError(f"conv2d_resample: x has {x.shape[1]} channels but w expects {w.shape[1]} x {groups} groups")
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise ValueError(f"conv2d_resample: up and down must be integers >= 1, got up={up!r}, down={down!r}")
    if (up > 1 or down > 1) and f is None:
        raise ValueError("conv2d_resample: resampling (up or down > 1) needs a filter f (see setup_filter)")
    out_c, _, kh, kw = w.shape
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    if up > 1:  # the filter's own padding for upsampling ...
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:  # ... and for downsampling
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pad = [px0, px1, py0, py1]

    if kh == 1 and kw == 1 and down > 1 and up == 1:  # 1x1: decimate first, then mix channels
        x = upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, groups, flip_weight)
    if kh == 1 and kw == 1 and up > 1 and down == 1:  # 1x1: mix channels first, then upsample
        x = _conv(x, w, groups, flip_weight)
        return upfirdn2d(x, f, up=up, padding=pad, gain=up**2, flip_filter=flip_filter)
    if down > 1 and up == 1:  # filter, then a strided convolution
        x = upfirdn2d(x, f, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, groups, flip_weight, stride=down)
    if up > 1:
        # The transposed convolution gives the full convolution of the zero-inserted x, (H - 1) * up + kh tall:
        # relative to it, the padded input starts kh - 1 later and ends up - kh later. Shared cropping is left to
        # the transposed convolution, the rest to the filter's padding.
        px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
        crop_x, crop_y = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = _conv_transpose(x, w, groups, flip_weight, stride=up, crop=(crop_y, crop_x))
        x = upfirdn2d(x, f, padding=[px0 + crop_x, px1 + crop_x, py0 + crop_y, py1 + crop_y], gain=up**2,
                      flip_filter=flip_filter)
        return upfirdn2d(x, f, down=down, flip_filter=flip_filter) if down > 1 else x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:  # plain convolution with symmetric padding
        return _conv(x, w, groups, flip_weight, padding=(py0, px0))
    x = upfirdn2d(x, None, padding=pad)
    return _conv(x, w, groups, flip_weight)
