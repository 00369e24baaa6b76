"""filtered_lrelu: StyleGAN3's alias-free activation: bias, upsample, leaky ReLU (gain, clamp), downsample.

`impl="ref"` is the composition of the reference upfirdn2d and bias_act (plain PyTorch: the CPU path, the test
oracle and the export path, differentiable to any order). "auto" uses the compiled operator
`torch.ops.translate_ops.filtered_lrelu` for CUDA tensors once the library (csrc/) provides it and
priors/ops/_backend.py has its Python side (`_backend.filtered_lrelu`); until then it warns once and runs the
reference path. "cuda" insists on the compiled operator and raises with the reason when it is missing.

The hook for the compiled path: `_backend.filtered_lrelu(x, fu, fd, b, up=int, down=int, padding=(px0, px1, py0,
py1), gain=float, slope=float, clamp=float (-1: none), flip_filter=bool)`, with fu / fd None, 1-D (separable) or
2-D and b None or (C,), exactly as this function received them after validation; it returns the
(N, C, out_h, out_w) result of `output_size` and carries its own fake and autograd registrations.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional

import torch

from priors.ops import _backend
from priors.ops.bias_act import bias_act
from priors.ops.upfirdn2d import IntPair, _pair, filter_size, parse_padding, upfirdn2d

_warned = {"missing": False}


def output_size(in_h: int, in_w: int, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor], up: int, down: int,
                padding: IntPair) -> tuple:
    """(out_h, out_w) of filtered_lrelu: the upsampled, padded image shrunk by both filters, then decimated."""
    fu_w, fu_h = filter_size(fu)
    fd_w, fd_h = filter_size(fd)
    px0, px1, py0, py1 = parse_padding(padding)
    out_w = (in_w * up + px0 + px1 - (fu_w - 1) - (fd_w - 1) + (down - 1)) // down
    out_h = (in_h * up + py0 + py1 - (fu_h - 1) - (fd_h - 1) + (down - 1)) // down
    return out_h, out_w


def _compiled_available(x: torch.Tensor, impl: str) -> bool:
    """Whether the compiled filtered_lrelu runs for x: the library is loaded for x's device (`use_cuda`) and it
    registers translate_ops::filtered_lrelu with its Python side in _backend."""
    if not _backend.use_cuda(x, impl):
        return False
    if _backend.has_op("filtered_lrelu"):
        return True
    reason = "the compiled library has no translate_ops::filtered_lrelu operator"
    if impl == "cuda":
        raise RuntimeError(f"filtered_lrelu: impl='cuda' requested but {reason}; use impl='auto' or 'ref'")
    if not _warned["missing"]:
        _warned["missing"] = True
        warnings.warn(f"priors.ops.filtered_lrelu: {reason}, the reference PyTorch path runs instead",
                      RuntimeWarning, stacklevel=3)
    return False


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor] = None, fd: Optional[torch.Tensor] = None,
                   b: Optional[torch.Tensor] = None, up: int = 1, down: int = 1, padding: IntPair = 0,
                   gain: float = math.sqrt(2), slope: float = 0.2, clamp: Optional[float] = None,
                   flip_filter: bool = False, impl: str = "auto") -> torch.Tensor:
    """y = downsample(clamp(lrelu(upsample(x + b)) * gain), fd).

    x: (N, C, H, W); fu, fd: the up and down filters, 1-D (separable), 2-D or None (identity); b: None or (C,);
    up, down: integer factors (the same along x and y); padding: int, (x, y) or (x0, x1, y0, y1) applied to the
    upsampled image (negative crops); gain and slope of the leaky ReLU (slope 1 is linear); clamp: None or the bound
    of the activations; flip_filter: False = convolution, True = correlation. The output is
    ((H * up + py0 + py1 - (fu_h - 1) - (fd_h - 1) + down - 1) // down) high, likewise wide.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"filtered_lrelu: expected a floating-point x of shape (N, C, H, W), got "
                         f"{getattr(x, 'shape', type(x).__name__)} {getattr(x, 'dtype', '')}")
    up_x, up_y = _pair(up, "filtered_lrelu up")
    down_x, down_y = _pair(down, "filtered_lrelu down")
    if up_x != up_y or down_x != down_y or up_x < 1 or down_x < 1:
        raise ValueError(f"filtered_lrelu: up and down must be integers >= 1 (the same along x and y), got "
                         f"up={up!r}, down={down!r}")
    up, down = up_x, down_x
    for name, f in (("fu", fu), ("fd", fd)):
        if f is not None and (not isinstance(f, torch.Tensor) or f.ndim not in (1, 2)):
            raise ValueError(f"filtered_lrelu: expected {name} None or a 1-D or 2-D tensor, got "
                             f"{getattr(f, 'shape', type(f).__name__)}")
        if f is not None and f.device != x.device:
            raise ValueError(f"filtered_lrelu: the filter {name} is on {f.device} but x is on {x.device}")
    if b is not None and (not isinstance(b, torch.Tensor) or b.ndim != 1 or b.shape[0] != x.shape[1]):
        raise ValueError(f"filtered_lrelu: expected b of shape ({x.shape[1]},) for x {tuple(x.shape)}, got "
                         f"{tuple(getattr(b, 'shape', ()))}")
    if clamp is not None and clamp < 0:
        raise ValueError(f"filtered_lrelu: clamp must be None or >= 0, got {clamp}")
    pad = parse_padding(padding)
    out_h, out_w = output_size(x.shape[2], x.shape[3], fu, fd, up, down, pad)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"filtered_lrelu: input {tuple(x.shape)} with up={up}, down={down}, padding={pad} and "
                         f"filters {filter_size(fu)[::-1]} / {filter_size(fd)[::-1]} leaves no output")
    if _compiled_available(x, impl):
        return _backend.filtered_lrelu(x, fu, fd, b, up=up, down=down, padding=pad, gain=float(gain),
                                       slope=float(slope), clamp=float(-1 if clamp is None else clamp),
                                       flip_filter=bool(flip_filter))
    return _filtered_lrelu_ref(x, fu, fd, b, up, down, pad, gain, slope, clamp, flip_filter)


def _filtered_lrelu_ref(x, fu, fd, b, up, down, pad, gain, slope, clamp, flip_filter) -> torch.Tensor:
    x = bias_act(x, b, impl="ref")
    # gain up**2: the inserted zeros would otherwise lower the mean by that factor
    x = upfirdn2d(x, fu, up=up, padding=pad, gain=up ** 2, flip_filter=flip_filter, impl="ref")
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp, impl="ref")
    return upfirdn2d(x, fd, down=down, flip_filter=flip_filter, impl="ref")
