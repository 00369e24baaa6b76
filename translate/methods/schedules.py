"""Learning-rate policies of the reference pix2pix/CycleGAN code, stepped once per epoch.

The reference sets the lr at the start of each epoch (its epoch e, counted from 1, trains at policy(e)); Lightning's
schedulers here step at the end of an epoch, so our epoch k (counted from 0) is the reference's k + 1: every factor
below is taken at k + 1, and the runs train every epoch at the reference's lr (with `linear`, the last at 0).
A policy that ends (`linear` after n_epochs + n_epochs_decay, `cosine` after n_epochs) holds its end value, 0, for
any epoch after that: a run trained or resumed past the schedule never gets a negative (or rising) learning rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from safeio.errors import ConfigError

LR_POLICIES = ("linear", "step", "cosine", "constant")


@dataclass
class EpochSchedule:
    """The per-epoch learning-rate schedule of a method's config (pix2pix and CycleGAN: the reference's options)."""

    lr_policy: str = "linear"  # linear | step | cosine | constant
    n_epochs: int = 100  # epochs at the initial learning rate (linear) / period (cosine)
    n_epochs_decay: int = 100  # epochs of linear decay to zero
    lr_decay_iters: int = 50  # lr_policy step: multiply by 0.1 every this many epochs

    def schedule_epochs(self) -> Optional[int]:
        """Epochs after which the schedule has reached its end value (None: it never ends)."""
        return schedule_epochs(self.lr_policy, self.n_epochs, self.n_epochs_decay)


def schedule_epochs(policy: str, n_epochs: int, n_epochs_decay: int) -> Optional[int]:
    """How long a policy runs: linear n_epochs + n_epochs_decay, cosine n_epochs; step and constant never end."""
    return {"linear": n_epochs + n_epochs_decay, "cosine": max(1, n_epochs)}.get(policy)


class LinearDecay:
    """Constant lr for `n_epochs`, then linear decay to zero over `n_epochs_decay` (a picklable lambda)."""

    def __init__(self, n_epochs: int, n_epochs_decay: int, epoch_count: int = 1):
        self.n_epochs, self.n_epochs_decay, self.epoch_count = n_epochs, n_epochs_decay, epoch_count

    def __call__(self, epoch: int) -> float:
        return max(0.0, 1.0 - max(0, epoch + 1 + self.epoch_count - self.n_epochs) / float(self.n_epochs_decay + 1))


class StepDecay:
    """x gamma every `step_size` epochs of the reference's count."""

    def __init__(self, step_size: int, gamma: float = 0.1):
        self.step_size, self.gamma = step_size, gamma

    def __call__(self, epoch: int) -> float:
        return self.gamma ** ((epoch + 1) // self.step_size)


class CosineDecay:
    """Cosine annealing to 0 over `t_max` epochs of the reference's count (torch's CosineAnnealingLR, eta_min 0),
    then 0 (torch's would rise again)."""

    def __init__(self, t_max: int):
        self.t_max = t_max

    def __call__(self, epoch: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch + 1, self.t_max) / self.t_max))


def build_scheduler(
    optimizer: Optimizer, policy: str, n_epochs: int, n_epochs_decay: int, lr_decay_iters: int = 50
) -> LRScheduler:
    if policy == "linear":
        return LambdaLR(optimizer, LinearDecay(n_epochs, n_epochs_decay))
    if policy == "step":  # x0.1 every lr_decay_iters epochs
        return LambdaLR(optimizer, StepDecay(lr_decay_iters))
    if policy == "cosine":
        return LambdaLR(optimizer, CosineDecay(max(1, n_epochs)))
    if policy == "constant":
        return LambdaLR(optimizer, lambda_constant)
    raise ConfigError(f"model.lr_policy: expected one of {list(LR_POLICIES)}, got '{policy}'", key="model.lr_policy")


def lambda_constant(epoch: int) -> float:
    return 1.0
