"""bias_act: bias + activation + gain + clamp in one call, with StyleGAN2-ADA semantics and defaults."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from priors.ops import _backend


@dataclass(frozen=True)
class Activation:
    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float


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


def resolve(act: str, alpha: Optional[float], gain: Optional[float], clamp: Optional[float]):
    if act not in ACTIVATIONS:
        raise ValueError(f"bias_act: act must be one of {sorted(ACTIVATIONS)}, got '{act}'")
    spec = ACTIVATIONS[act]
    return (float(alpha if alpha is not None else spec.def_alpha), float(gain if gain is not None else spec.def_gain),
            float(clamp if clamp is not None else -1))


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = "linear",
             alpha: Optional[float] = None, gain: Optional[float] = None, clamp: Optional[float] = None,
             impl: str = "auto") -> torch.Tensor:
    """y = clamp(act(x + b) * gain, -clamp, clamp); b (x.shape[dim],) is broadcast along `dim`."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"bias_act: expected a tensor x, got {type(x).__name__}")
    alpha, gain, clamp = resolve(act, alpha, gain, clamp)
    if b is not None:
        if b.ndim != 1 or not 0 <= dim < x.ndim or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias_act: expected b of shape ({x.shape[dim] if 0 <= dim < x.ndim else '?'},) "
                             f"for x {tuple(x.shape)} and dim={dim}, got {tuple(b.shape)}")
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
