"""Learning-rate policies of the reference pix2pix/CycleGAN code, stepped once per epoch."""
from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, StepLR

LR_POLICIES = ("linear", "step", "cosine", "constant")


class LinearDecay:
    """Constant lr for `n_epochs`, then linear decay to zero over `n_epochs_decay` (a picklable lambda)."""

    def __init__(self, n_epochs: int, n_epochs_decay: int, epoch_count: int = 1):
        self.n_epochs, self.n_epochs_decay, self.epoch_count = n_epochs, n_epochs_decay, epoch_count

    def __call__(self, epoch: int) -> float:
        return 1.0 - max(0, epoch + self.epoch_count - self.n_epochs) / float(self.n_epochs_decay + 1)


def build_scheduler(
    optimizer: Optimizer, policy: str, n_epochs: int, n_epochs_decay: int, lr_decay_iters: int = 50
) -> LRScheduler:
    if policy == "linear":
        return LambdaLR(optimizer, LinearDecay(n_epochs, n_epochs_decay))
    if policy == "step":  # x0.1 every lr_decay_iters epochs
        return StepLR(optimizer, step_size=lr_decay_iters, gamma=0.1)
    if policy == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max(1, n_epochs), eta_min=0)
    if policy == "constant":
        return LambdaLR(optimizer, LinearDecay(10**9, 1))
    raise ValueError(f"model.lr_policy: expected one of {list(LR_POLICIES)}, got '{policy}'")
