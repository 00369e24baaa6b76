"""bias_act: bias + activation + gain + clamp in one call, with StyleGAN2-ADA semantics and defaults."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

from priors.ops import _backend


@dataclass(frozen=True)
class Activation:
    func: Callable[[torch.Tensor, float], torch.Tensor]  # (x, alpha) -> act(x)
    def_alpha: float  # the default alpha (only lrelu uses one)
    def_gain: float  # the default gain: sqrt(2) keeps the variance of ReLU-like activations (He et al.)


ACTIVATIONS = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def resolve(act: str, alpha: Optional[float], gain: Optional[float],
            clamp: Optional[float]) -> Tuple[float, float, float]:
    """(alpha, gain, clamp) with the activation's defaults filled in; clamp -1 means none."""
    if act not in ACTIVATIONS:
        raise ValueError(f"bias_act: act must be one of {sorted(ACTIVATIONS)}, got {act!r}")
    if clamp is not None and clamp < 0:
        raise ValueError(f"bias_act: clamp must be None or >= 0, got {clamp}")
    spec = ACTIVATIONS[act]
    return (float(spec.def_alpha if alpha is None else alpha), float(spec.def_gain if gain is None else gain),
            float(-1 if clamp is None else clamp))


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = "linear",
             alpha: Optional[float] = None, gain: Optional[float] = None, clamp: Optional[float] = None,
             impl: str = "auto") -> torch.Tensor:
    """y = clamp(act(x + b, alpha) * gain, -clamp, clamp).

    b: None or (x.shape[dim],), broadcast along `dim`; alpha and gain default to the activation's (lrelu: 0.2 and
    sqrt(2)); clamp None = no clamping.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"bias_act: expected a floating-point tensor x, got "
                         f"{getattr(x, 'dtype', type(x).__name__)}")
    alpha, gain, clamp = resolve(act, alpha, gain, clamp)
    if b is not None:
        if not 0 <= dim < x.ndim:
            raise ValueError(f"bias_act: dim must be in [0, {x.ndim}) for x {tuple(x.shape)}, got {dim}")
        if not isinstance(b, torch.Tensor) or b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias_act: expected b of shape ({x.shape[dim]},) for x {tuple(x.shape)} and "
                             f"dim={dim}, got {tuple(getattr(b, 'shape', ()))}")
    if _backend.use_cuda(x, impl):
        return _backend.bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = ACTIVATIONS[act].func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
