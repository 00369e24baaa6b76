"""Adversarial losses and the WGAN-GP gradient penalty, written as the papers state them."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from safeio.errors import ConfigError

GAN_MODES = ("vanilla", "lsgan", "hinge", "wgangp")


def check_gan_mode(mode: str) -> str:
    if mode not in GAN_MODES:
        raise ConfigError(f"gan_mode: expected one of {list(GAN_MODES)}, got '{mode}'", key="gan_mode")
    return mode


def d_loss(pred: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    """Discriminator loss for predictions on real (real=True) or fake images."""
    if mode == "vanilla":  # -log D(x) / -log(1 - D(G(z))), D outputs logits
        target = torch.ones_like(pred) if real else torch.zeros_like(pred)
        return F.binary_cross_entropy_with_logits(pred, target)
    if mode == "lsgan":  # (D(x) - 1)^2 / D(G(z))^2
        return F.mse_loss(pred, torch.ones_like(pred) if real else torch.zeros_like(pred))
    if mode == "hinge":  # max(0, 1 - D(x)) / max(0, 1 + D(G(z)))
        return F.relu(1.0 - pred).mean() if real else F.relu(1.0 + pred).mean()
    if mode == "wgangp":  # -D(x) / D(G(z))
        return -pred.mean() if real else pred.mean()
    raise ConfigError(f"gan_mode: expected one of {list(GAN_MODES)}, got '{mode}'", key="gan_mode")


def g_loss(pred: torch.Tensor, mode: str) -> torch.Tensor:
    """Generator loss: make the discriminator call its fakes real."""
    if mode in ("vanilla", "lsgan"):
        return d_loss(pred, True, mode)
    if mode in ("hinge", "wgangp"):
        return -pred.mean()
    raise ConfigError(f"gan_mode: expected one of {list(GAN_MODES)}, got '{mode}'", key="gan_mode")


def gradient_penalty(netd, real: torch.Tensor, fake: torch.Tensor, constant: float = 1.0) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al.): E[(||grad D(x_hat)||_2 - c)^2] on random interpolates x_hat of real and fake."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    pred = netd(x_hat)
    (grad,) = torch.autograd.grad(pred.sum(), x_hat, create_graph=True)
    norm = (grad.flatten(1) + 1e-16).norm(2, dim=1)
    return ((norm - constant) ** 2).mean()
