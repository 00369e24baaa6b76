"""upfirdn2d: upsample (zero insertion), pad/crop, 2-D FIR filter, downsample, with StyleGAN2-ADA semantics.

`impl="ref"` is plain PyTorch (the CPU path, the test oracle and the export path, differentiable to any order);
"auto" uses the compiled CUDA op when one is available for the tensor, else the reference path; "cuda" insists on
the compiled op (see priors/ops/_backend.py).
"""
from __future__ import annotations

import operator
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from priors.ops import _backend

IntPair = Union[int, Sequence[int]]
SEPARABLE_MIN_TAPS = 8  # setup_filter keeps 1-D filters this long separable (two 1-D passes beat one 2-D pass)


def _ints(v, n: int) -> Optional[Tuple[int, ...]]:
    """v as a tuple of n ints (an int is repeated), or None when it is not one."""
    try:
        if isinstance(v, bool):
            return None
        if not isinstance(v, (list, tuple)):
            return (operator.index(v),) * n
        return tuple(operator.index(i) for i in v) if len(v) == n else None
    except TypeError:
        return None


def _pair(v: IntPair, name: str) -> Tuple[int, int]:
    """int | (x, y) -> (x, y)."""
    pair = _ints(v, 2)
    if pair is None:
        raise ValueError(f"{name}: expected an int or a pair of ints (x, y), got {v!r}")
    return pair


def parse_padding(padding: IntPair) -> Tuple[int, int, int, int]:
    """int | (x, y) | (x0, x1, y0, y1) -> (x0, x1, y0, y1); negative values crop."""
    pad = _ints(padding, 4)
    if pad is None:
        xy = _ints(padding, 2) if isinstance(padding, (list, tuple)) else None
        if xy is None:
            raise ValueError(f"padding: expected an int, (x, y) or (x0, x1, y0, y1), got {padding!r}")
        pad = (xy[0], xy[0], xy[1], xy[1])
    return pad


def filter_size(f: Optional[torch.Tensor]) -> Tuple[int, int]:
    """(width, height) of a filter; a 1-D filter is separable (applied along x, then along y)."""
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2):
        raise ValueError(f"filter: expected None or a 1-D or 2-D tensor, got {getattr(f, 'shape', type(f).__name__)}")
    return (f.shape[1], f.shape[0]) if f.ndim == 2 else (f.shape[0], f.shape[0])


def setup_filter(f, device: torch.device = torch.device("cpu"), normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1, separable: Optional[bool] = None) -> torch.Tensor:
    """A float32 filter from a number, list, array or tensor.

    normalize: divide by the sum (a low-pass filter keeps the mean); separable: keep a 1-D filter 1-D (None: when it
    has >= 8 taps), else make it 2-D as the outer product with itself; gain multiplies the 2-D response.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"setup_filter: expected a non-empty 1-D or 2-D filter, got shape {tuple(f.shape)}")
    if normalize:
        f = f / f.sum()
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= SEPARABLE_MIN_TAPS
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim == 2 and separable:
        raise ValueError(f"setup_filter: a 2-D filter {tuple(f.shape)} cannot be separable")
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))  # a 1-D filter runs twice: each pass carries sqrt(gain)
    return f.to(device=device)


def _upfirdn2d_ref(x: torch.Tensor, f: Optional[torch.Tensor], up: Tuple[int, int], down: Tuple[int, int],
                   pad: Tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    n, c, h, w = x.shape
    (up_x, up_y), (down_x, down_y), (px0, px1, py0, py1) = up, down, pad
    if up_x > 1 or up_y > 1:  # zero insertion: every sample is followed by up - 1 zeros
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up_x - 1, 0, 0, 0, up_y - 1])
        x = x.reshape(n, c, h * up_y, w * up_x)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    if f is None:
        x = x * gain if gain != 1 else x
    else:
        f = f.to(x.dtype) * (gain ** (f.ndim / 2))
        if not flip_filter:  # a true convolution; conv2d correlates
            f = f.flip(list(range(f.ndim)))
        if f.ndim == 2:
            x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)
        else:
            x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, f.shape[0]), groups=c)  # along x
            x = F.conv2d(x, f[None, None, :, None].expand(c, 1, f.shape[0], 1), groups=c)  # along y
    if down_x > 1 or down_y > 1:
        x = x[:, :, ::down_y, ::down_x]
    return x


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: IntPair = 1, down: IntPair = 1, padding: IntPair = 0,
              flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Upsample, pad, filter and downsample a batch of 2-D images.

    x: (N, C, H, W); f: 2-D (fh, fw), 1-D (separable) or None (identity); up/down: int or (x, y); padding: int,
    (x, y) or (x0, x1, y0, y1) with respect to the upsampled image (negative values crop); flip_filter: False =
    convolution, True = correlation; gain multiplies the output. Output width:
    (W * up_x + pad_x0 + pad_x1 - fw + down_x) // down_x, likewise the height.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d: expected x of shape (N, C, H, W), got {getattr(x, 'shape', type(x).__name__)}")
    if not x.is_floating_point():
        raise ValueError(f"upfirdn2d: expected a floating-point x, got {x.dtype}")
    fw, fh = filter_size(f)
    if f is not None and f.device != x.device:
        raise ValueError(f"upfirdn2d: the filter is on {f.device} but x is on {x.device}")
    up, down, pad = _pair(up, "upfirdn2d up"), _pair(down, "upfirdn2d down"), parse_padding(padding)
    if min(up) < 1 or min(down) < 1:
        raise ValueError(f"upfirdn2d: up and down must be >= 1, got up={up}, down={down}")
    out_w = x.shape[3] * up[0] + pad[0] + pad[1] - fw + 1
    out_h = x.shape[2] * up[1] + pad[2] + pad[3] - fh + 1
    if out_w < 1 or out_h < 1:
        raise ValueError(f"upfirdn2d: input {tuple(x.shape)} with up={up}, padding={pad} and a {fh}x{fw} filter "
                         "leaves no output")
    if _backend.use_cuda(x, impl):
        return _backend.upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip_filter, gain=gain)
    return _upfirdn2d_ref(x, f, up, down, pad, flip_filter, gain)


def filter2d(x: torch.Tensor, f: Optional[torch.Tensor], padding: IntPair = 0, flip_filter: bool = False,
             gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Filter with f keeping the size: the filter's own 'same' padding plus `padding`."""
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    pad = (px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2)
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: Optional[torch.Tensor], up: IntPair = 2, padding: IntPair = 0,
               flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Upsample by `up` and filter with f: (H, W) -> (H * up_y, W * up_x). The gain is multiplied by up_x * up_y
    (the inserted zeros) so that a normalised filter keeps the mean."""
    up_x, up_y = _pair(up, "upsample2d up")
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = (px0 + (fw + up_x - 1) // 2, px1 + (fw - up_x) // 2, py0 + (fh + up_y - 1) // 2, py1 + (fh - up_y) // 2)
    return upfirdn2d(x, f, up=(up_x, up_y), padding=pad, flip_filter=flip_filter, gain=gain * up_x * up_y, impl=impl)


def downsample2d(x: torch.Tensor, f: Optional[torch.Tensor], down: IntPair = 2, padding: IntPair = 0,
                 flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Filter with f and keep every `down`-th sample: (H, W) -> (H // down_y, W // down_x)."""
    down_x, down_y = _pair(down, "downsample2d down")
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = (px0 + (fw - down_x + 1) // 2, px1 + (fw - down_x) // 2, py0 + (fh - down_y + 1) // 2,
           py1 + (fh - down_y) // 2)
    return upfirdn2d(x, f, down=(down_x, down_y), padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)
