"""Normalization layers of the reference pix2pix/CycleGAN nets, and their test-time variants."""
from __future__ import annotations

import copy
import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from safeio.errors import ConfigError

NORMS = ("batch", "instance", "none")
NORM_STATS = ("running", "sample")  # what an inference copy's BatchNorm normalises with (see inference_copy)


def get_norm_layer(name: str) -> Callable[[int], nn.Module]:
    """batch: BatchNorm with affine and running stats; instance: InstanceNorm without either; none: identity."""
    if name == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if name == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if name == "none":
        return lambda channels: nn.Identity()
    raise ConfigError(f"norm: expected one of {list(NORMS)}, got {name!r}", key="norm")


def uses_bias(norm: str) -> bool:
    """The reference gives convs a bias only when followed by InstanceNorm (not for batch, nor for none)."""
    return norm == "instance"


class SampleStatsBatchNorm(nn.Module):
    """BatchNorm that normalises every sample with its own per-channel statistics (and the learned affine).

    At batch size 1 this equals the reference's test-time BatchNorm in train mode, but a sample's output does not
    depend on the other samples of the batch.
    """

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.eps = bn.eps
        self.weight = bn.weight
        self.bias = bn.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def _replace(module: nn.Module, make: Callable[[nn.Module], nn.Module | None]) -> None:
    for name, child in module.named_children():
        new = make(child)
        if new is not None:
            setattr(module, name, new)
        else:
            _replace(child, make)


class _ActiveDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, training=True)


def inference_copy(net: nn.Module, norm_stats: str = "running", dropout: bool = False) -> nn.Module:
    """A copy of `net` in eval mode for inference and export.

    norm_stats "running": BatchNorm uses its running statistics (reference `--eval`); "sample": each sample is
    normalised with its own statistics (the reference test default, BatchNorm in train mode at batch size 1).
    dropout True keeps dropout active (the reference's stochastic test-time behaviour); False removes it.
    """
    if norm_stats not in NORM_STATS:
        raise ValueError(f"norm_stats: expected 'running' or 'sample', got {norm_stats!r}")
    net = copy.deepcopy(net).eval()

    def swap(child: nn.Module):
        if norm_stats == "sample" and isinstance(child, nn.BatchNorm2d):
            return SampleStatsBatchNorm(child)
        if isinstance(child, nn.Dropout):
            return _ActiveDropout(child.p) if dropout else nn.Identity()
        return None

    _replace(net, swap)
    for p in net.parameters():
        p.requires_grad_(False)
    return net
