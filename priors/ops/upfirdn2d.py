"""upfirdn2d: upsample (zero insertion), pad/crop, 2-D FIR filter, downsample, with StyleGAN2-ADA semantics.

`impl="ref"` is plain PyTorch (the CPU path, the test oracle and the export path); "auto" uses the compiled CUDA op
when one is available for the tensor, else the reference path; "cuda" insists on the compiled op.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from priors.ops import _backend

IntPair = Union[int, Sequence[int]]


def _pair(v: IntPair, name: str) -> Tuple[int, int]:
    if isinstance(v, int):
        return v, v
    v = [int(i) for i in v]
    if len(v) != 2:
        raise ValueError(f"{name}: expected an int or (x, y), got {v}")
    return v[0], v[1]


def parse_padding(padding: IntPair) -> Tuple[int, int, int, int]:
    """int | (x, y) | (x0, x1, y0, y1) -> (x0, x1, y0, y1)."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    p = [int(i) for i in padding]
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    if len(p) == 4:
        return p[0], p[1], p[2], p[3]
    raise ValueError(f"padding: expected an int, (x, y) or (x0, x1, y0, y1), got {p}")


def filter_size(f: Optional[torch.Tensor]) -> Tuple[int, int]:
    """(width, height) of a filter; 1-D filters are separable (applied along x and y)."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f"filter: expected a 1-D or 2-D tensor, got shape {tuple(f.shape)}")
    return (f.shape[-1], f.shape[0]) if f.ndim == 2 else (f.shape[0], f.shape[0])


def setup_filter(f, device=torch.device("cpu"), normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1, separable: Optional[bool] = None) -> torch.Tensor:
    """A filter tensor from a list/array: normalised to sum 1, made 2-D unless separable (1-D with >= 8 taps)."""
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"filter: expected a non-empty 1-D or 2-D filter, got shape {tuple(f.shape)}")
    if normalize:
        f = f / f.sum()
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def _upfirdn2d_ref(x, f, up, down, pad, flip_filter, gain):
    n, c, h, w = x.shape
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pad
    if f is None:
        f = torch.ones(1, 1, dtype=x.dtype, device=x.device)
    # upsample: insert zeros after every sample
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(n, c, h * upy, w * upx)
    # pad (positive) / crop (negative)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    # FIR filter: a true convolution unless flip_filter (conv2d correlates, so flip first)
    f = f.to(x.dtype) * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=c)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=c)
        x = F.conv2d(x, f.unsqueeze(3), groups=c)
    return x[:, :, ::downy, ::downx]


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: IntPair = 1, down: IntPair = 1, padding: IntPair = 0,
              flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Pad, upsample, filter and downsample a batch of 2-D images.

    x: (N, C, H, W); f: 2-D (fh, fw), 1-D (separable) or None; up/down: int or (x, y); padding: int, (x, y) or
    (x0, x1, y0, y1) (negative values crop), applied after upsampling. Output size along x:
    (W * up_x + pad_x0 + pad_x1 - fw + down_x) // down_x.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d: expected x of shape (N, C, H, W), got {getattr(x, 'shape', type(x))}")
    if f is not None and (not isinstance(f, torch.Tensor) or f.ndim not in (1, 2)):
        raise ValueError(f"upfirdn2d: expected f as a 1-D or 2-D tensor or None, got {getattr(f, 'shape', f)}")
    up, down, pad = _pair(up, "up"), _pair(down, "down"), parse_padding(padding)
    if min(up) < 1 or min(down) < 1:
        raise ValueError(f"upfirdn2d: up and down must be >= 1, got up={up}, down={down}")
    fw, fh = filter_size(f)
    out_w = x.shape[3] * up[0] + pad[0] + pad[1] - fw + 1
    out_h = x.shape[2] * up[1] + pad[2] + pad[3] - fh + 1
    if out_w < 1 or out_h < 1:
        raise ValueError(f"upfirdn2d: input {tuple(x.shape)} with up={up}, padding={pad} and a {fh}x{fw} filter "
                         "leaves no output")
    if _backend.use_cuda(x, impl):
        return _backend.upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip_filter, gain=gain)
    return _upfirdn2d_ref(x, f, up, down, pad, flip_filter, gain)


def filter2d(x, f, padding: IntPair = 0, flip_filter: bool = False, gain: float = 1, impl: str = "auto"):
    """Filter with f, keeping the size (padding is added around the filter's own 'same' padding)."""
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up: IntPair = 2, padding: IntPair = 0, flip_filter: bool = False, gain: float = 1,
               impl: str = "auto"):
    """Upsample by `up` with the FIR filter f (gain scaled by up_x * up_y to keep the mean)."""
    upx, upy = _pair(up, "up")
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=(upx, upy), padding=pad, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x, f, down: IntPair = 2, padding: IntPair = 0, flip_filter: bool = False, gain: float = 1,
                 impl: str = "auto"):
    """Filter with f then keep every `down`-th sample."""
    downx, downy = _pair(down, "down")
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2,
           py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=(downx, downy), padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)
