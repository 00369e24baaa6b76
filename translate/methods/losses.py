"""Adversarial losses (pix2pix/CycleGAN modes, StyleGAN2's logistic losses), the WGAN-GP gradient penalty and the R1
penalty, written as the papers state them."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.functional import softplus

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


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(G(z))), the non-saturating generator loss."""
    return softplus(-fake_logits).mean()


def d_logistic(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))), the logistic discriminator loss."""
    return softplus(fake_logits).mean() + softplus(-real_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma / 2 * |grad_x D(x)|^2 averaged over the batch, from D's logits of the reals x (which require grad);
    differentiable (double backward) so that it trains D."""
    (grads,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return gamma / 2 * grads.square().flatten(1).sum(dim=1).mean()  # images (N, C, H, W) or codes (N, w_dim)


def whole_groups(images: torch.Tensor, group_size: int) -> torch.Tensor:
    """The images cut to a whole number of D's minibatch-stddev groups (an epoch's last, smaller batch loses its
    incomplete group)."""
    group = min(group_size, images.shape[0])
    return images[: images.shape[0] - images.shape[0] % group]
