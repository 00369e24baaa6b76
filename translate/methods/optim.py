"""Optimizers the reference methods use that torch does not ship as one class.

`Ranger` is RAdam + Lookahead (+ gradient centralisation), the optimizer pSp trains its encoders with, built on
`torch.optim.RAdam`: every `k` steps the weights are pulled back towards a slow copy by `alpha`. Its state (the
slow weights) lives in `self.state`, so checkpoints and resume work like any torch optimizer.
"""
from __future__ import annotations

from typing import Iterable

import torch
from safeio.errors import ConfigError

RANGER_DEFAULTS = {"betas": (0.95, 0.999), "eps": 1e-5, "alpha": 0.5, "k": 6}  # Ranger's published defaults


class Ranger(torch.optim.RAdam):
    """RAdam with Lookahead (k, alpha) and, with `use_gc`, gradient centralisation of conv/linear weights."""

    def __init__(self, params: Iterable, lr: float = 1e-3, betas=RANGER_DEFAULTS["betas"],
                 eps: float = RANGER_DEFAULTS["eps"], weight_decay: float = 0.0, alpha: float = RANGER_DEFAULTS["alpha"],
                 k: int = RANGER_DEFAULTS["k"], use_gc: bool = True):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Ranger: alpha must be in [0, 1], got {alpha}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"Ranger: k must be an int >= 1, got {k!r}")
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        for group in self.param_groups:
            group.setdefault("alpha", alpha)
            group.setdefault("k", k)
            group.setdefault("use_gc", use_gc)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            if group["use_gc"]:
                whole = group.get("gc_whole", False)  # one mean over the whole tensor (see psp_decoder_groups)
                for p in group["params"]:
                    if p.grad is not None and (whole or p.grad.dim() > 1):
                        dims = tuple(range(p.grad.dim())) if whole else tuple(range(1, p.grad.dim()))
                        p.grad.sub_(p.grad.mean(dim=dims, keepdim=True))
        # the slow weights start at the weights before the first step; they go into `state` only after RAdam has
        # initialised its own entries there (it does so when it finds the state empty)
        first = {p: p.detach().clone() for group in self.param_groups for p in group["params"]
                 if p.grad is not None and "slow" not in self.state[p]}
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "slow" not in state:
                    state["slow"] = first[p]
                    state["lookahead_step"] = 0
                state["lookahead_step"] += 1
                if state["lookahead_step"] % group["k"] == 0:
                    state["slow"].add_(p - state["slow"], alpha=group["alpha"])
                    p.copy_(state["slow"])
        return loss


def psp_decoder_groups(decoder: torch.nn.Module) -> list:
    """The StyleGAN2 decoder's parameters as pSp's Ranger sees them when it fine-tunes the decoder (train_decoder).
    pSp's rosinality generator stores modulated conv weights as (1, out, in, k, k), the constant input as
    (1, C, 4, 4) and the ToRGB bias as (1, 3, 1, 1), so gradient centralisation (a mean over every dim but the
    first) takes one mean over the whole tensor there; our NVIDIA-layout weights (out, in, k, k), (C, 4, 4), (3,)
    go into a `gc_whole` group for the same update. Linear weights and other biases have the same layout in both."""
    whole, rest = [], []
    for name, p in decoder.named_parameters():
        (whole if p.dim() >= 3 or name.endswith("torgb.bias") else rest).append(p)
    return [{"params": whole, "gc_whole": True}, {"params": rest}]


OPTIMIZERS = ("adam", "ranger")


def build_optimizer(name: str, params: Iterable, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "ranger":
        return Ranger(params, lr=lr)
    raise ConfigError(f"model.optim_name: expected one of {list(OPTIMIZERS)}, got {name!r}", key="model.optim_name")
