"""Training a StyleGAN2 prior (Karras et al. 2020) from images, as NVIDIA's stylegan2-ada-pytorch does it.

Non-saturating logistic loss; R1 on reals and path-length regularization, both lazy (D's every `d_reg_interval`,
G's every `g_reg_interval` minibatches, their losses scaled by the interval, each its own optimizer step); style
mixing; an exponential moving average of G (G_ema, the network that is sampled and exported); Adam with the
lazy-regularization correction of lr and betas; optional DiffAugment before D. The images are `batch["B"]`.
`cli.py export` writes G_ema in the prior format of priors.loaders, which `priors.load_prior` reads.
`model.architecture: stylegan3-t | stylegan3-r` trains a StyleGAN3 generator (priors.stylegan3) against the same
discriminator with the same losses and R1, but without path-length regularization and style mixing, as NVIDIA's
StyleGAN3 configs do (both must be set to 0: nothing is switched off silently).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from priors import stylegan3
from priors.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from safeio.errors import ConfigError
from translate.methods.diffaugment import check_policy, diff_augment
from translate.methods.images import log_images
from translate.methods.interface import PRIOR, Method
from translate.methods.losses import d_logistic, g_nonsaturating, r1_penalty, whole_groups


@dataclass
class StyleGAN2Config:
    """StyleGAN2 training options; defaults are config F and NVIDIA's stylegan2-ada-pytorch training defaults."""

    architecture: str = "stylegan2"  # the generator: stylegan2 | stylegan3-t | stylegan3-r (Alias-Free GAN)
    resolution: int = 256  # image side, a power of two (must equal the data's image size)
    z_dim: int = 512  # input latent z
    w_dim: int = 512  # intermediate latent w
    mapping_layers: int = 8  # fully connected layers of the mapping network
    mapping_lr_multiplier: float = 0.01  # learning-rate multiplier of the mapping network
    channel_base: int = 32768  # feature maps at resolution r: min(channel_base // r, channel_max), G and D
    channel_max: int = 512
    conv_clamp: Optional[float] = None  # clamp conv outputs to +-conv_clamp (NVIDIA's ADA configs: 256)
    mbstd_group_size: int = 4  # D's minibatch-stddev group (the batch size must be a multiple of it)
    r1_gamma: float = 10.0  # R1 weight gamma: loss gamma / 2 * |grad D(real)|^2 (0 = off)
    d_reg_interval: int = 16  # R1 every this many minibatches (lazy regularization)
    g_reg_interval: int = 4  # path-length regularization every this many minibatches
    pl_weight: float = 2.0  # path-length regularization weight (0 = off)
    pl_decay: float = 0.01  # decay of the path-length running mean
    pl_batch_shrink: int = 2  # path-length steps use batch_size // pl_batch_shrink samples
    style_mixing_prob: float = 0.9  # probability of mixing two latents in a training sample
    ema_kimg: float = 10.0  # half-life of G_ema, in thousands of images
    ema_rampup: Optional[float] = None  # half-life at most this fraction of the images seen so far (None = off)
    lr: float = 0.002  # Adam learning rate of G and D (before the lazy-regularization correction)
    beta1: float = 0.0  # Adam beta1
    beta2: float = 0.99  # Adam beta2
    augment: List[str] = field(default_factory=list)  # DiffAugment policies: color, translation, cutout
    val_samples: int = 16  # G_ema samples (seeds 0..n-1, a square grid) logged at each validation
    val_truncation: float = 1.0  # truncation psi of those samples
    magnitude_ema_beta: float = 0.999  # StyleGAN3: decay of each layer's input magnitude (NVIDIA: 0.5 ** (batch / 2e4))
    sg3_layers: int = 14  # StyleGAN3: synthesis layers before the ToRGB (NVIDIA: 14)
    sg3_critical: int = 2  # StyleGAN3: critically sampled layers at the end (NVIDIA: 2)
    sg3_margin: int = 10  # StyleGAN3: extra pixels around the internal feature maps (NVIDIA: 10)


def sanitize_grads(params: Iterable[torch.Tensor]) -> None:
    """Before every optimizer step, as NVIDIA's training loop: a parameter a loss did not reach (G's ToRGB biases in
    the path-length step, D's output bias in R1) gets a zero gradient instead of none, so Adam still counts the step
    and decays its moments (the reference's `+ 0 * output` terms); NaN/inf gradients become 0/+-1e5 instead of
    poisoning Adam's state for good."""
    for p in params:
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        else:
            torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)


def lazy_correction(interval: int) -> float:
    """c = interval / (interval + 1): Adam runs at lr * c with betas ** c when a regularizer takes every
    interval-th step (StyleGAN2 paper, appendix B)."""
    return interval / (interval + 1) if interval > 0 else 1.0


ARCHITECTURES = ("stylegan2", "stylegan3-t", "stylegan3-r")


def build_generator(c: StyleGAN2Config, img_channels: int) -> nn.Module:
    """The generator `model.architecture` names. StyleGAN3-R is T with 1x1 convolutions and radial filters (its
    doubled channel_base / channel_max, as NVIDIA's train.py sets them, are the config's business)."""
    if c.architecture not in ARCHITECTURES:
        raise ConfigError(f"model.architecture: expected one of {ARCHITECTURES}, got {c.architecture!r}",
                          key="model.architecture")
    if c.architecture == "stylegan2":
        return Generator(GeneratorConfig(
            z_dim=c.z_dim, w_dim=c.w_dim, img_resolution=c.resolution, img_channels=img_channels,
            channel_base=c.channel_base, channel_max=c.channel_max, mapping_layers=c.mapping_layers,
            mapping_lr_multiplier=c.mapping_lr_multiplier, conv_clamp=c.conv_clamp))
    for key in ("pl_weight", "style_mixing_prob"):
        if getattr(c, key) != 0:
            raise ConfigError(f"model.{key}: StyleGAN3 trains without path-length regularization and style mixing "
                              f"(NVIDIA's configs); set it to 0 for model.architecture={c.architecture}, got "
                              f"{getattr(c, key)}", key=f"model.{key}")
    radial = c.architecture == "stylegan3-r"
    return stylegan3.Generator(stylegan3.GeneratorConfig(
        z_dim=c.z_dim, w_dim=c.w_dim, img_resolution=c.resolution, img_channels=img_channels,
        channel_base=c.channel_base, channel_max=c.channel_max, mapping_layers=c.mapping_layers,
        mapping_lr_multiplier=c.mapping_lr_multiplier, conv_clamp=256 if c.conv_clamp is None else c.conv_clamp,
        conv_kernel=1 if radial else 3, use_radial_filters=radial, magnitude_ema_beta=c.magnitude_ema_beta,
        num_layers=c.sg3_layers, num_critical=c.sg3_critical, margin_size=c.sg3_margin))


class StyleGAN2(Method):
    """G, D and G_ema; one minibatch = a G step (+ path length) then a D step (+ R1), then the EMA update."""

    config_class = StyleGAN2Config
    exports = PRIOR  # G_ema as a prior folder (export_to), which pSp translates through
    frozen_modules = ("g_ema",)  # G_ema is only ever sampled; its w_avg comes from G
    grid_caption = "G_ema samples, seeds 0.."

    def __init__(self, model: StyleGAN2Config, input_nc: int = 3, output_nc: int = 3, direction: str = "AtoB"):
        super().__init__(model, input_nc, output_nc, direction)
        self.automatic_optimization = False
        c = self.cfg
        check_policy(c.augment)
        for key in ("d_reg_interval", "g_reg_interval", "pl_batch_shrink", "mbstd_group_size", "val_samples"):
            if getattr(c, key) < 1:
                raise ConfigError(f"model.{key}: expected a positive integer, got {getattr(c, key)}",
                                  key=f"model.{key}")
        self.net_g = build_generator(c, output_nc)
        self.net_d = Discriminator(DiscriminatorConfig(
            img_resolution=c.resolution, img_channels=output_nc, channel_base=c.channel_base,
            channel_max=c.channel_max, mbstd_group_size=c.mbstd_group_size, conv_clamp=c.conv_clamp))
        self.g_ema = copy.deepcopy(self.net_g).eval().requires_grad_(False)
        self.register_buffer("pl_mean", torch.zeros([]))  # running mean of the path lengths
        self.n_seen = 0  # real images seen (drives the EMA ramp-up); kept in checkpoints
        self.n_minibatches = 0  # minibatches trained (decides the lazy regularization steps)
        # set by the runner (translate.train.runner.configure_tracking); plain defaults keep the module usable alone
        self.image_every_n_steps = 0
        self.n_images = 4
        self.image_dir: Optional[Path] = None

    # ---- training ---------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        c = self.cfg
        opts = []
        for net, interval in ((self.net_g, c.g_reg_interval), (self.net_d, c.d_reg_interval)):
            k = lazy_correction(interval)
            opts.append(torch.optim.Adam(net.parameters(), lr=c.lr * k, betas=(c.beta1 ** k, c.beta2 ** k)))
        return opts

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return diff_augment(images, self.cfg.augment) if self.cfg.augment else images

    def sample(self, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """n training samples of G with style mixing: (images (N, C, H, W), ws (N, n_latent, w_dim))."""
        z = torch.randn(n, self.cfg.z_dim, device=self.device)
        ws = self.net_g.mapping(z)
        ws = self.net_g.mixing_regularization(ws, prob=self.cfg.style_mixing_prob)
        return self.net_g.synthesis(ws), ws

    def path_length_penalty(self, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(pl_weight * (|J_w^T y| - a)^2 averaged, mean path length): y random images scaled by 1/sqrt(H W), a the
        running mean of the lengths (updated here)."""
        c = self.cfg
        fake, ws = self.sample(max(1, n // c.pl_batch_shrink))
        pl_noise = torch.randn_like(fake) / math.sqrt(fake.shape[2] * fake.shape[3])
        (pl_grads,) = torch.autograd.grad((fake * pl_noise).sum(), ws, create_graph=True)
        pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()  # (N,): mean over the n_latent styles
        pl_mean = self.pl_mean.lerp(pl_lengths.mean(), c.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        return c.pl_weight * (pl_lengths - pl_mean).square().mean(), pl_lengths.mean().detach()

    def r1_penalty(self, real: torch.Tensor) -> torch.Tensor:
        """gamma / 2 * |grad_x D(x)|^2 on real images x (through the augmentation, as D sees them)."""
        real = real.detach().requires_grad_(True)
        return r1_penalty(self.net_d(self.augment(real)), real, self.cfg.r1_gamma)

    def _step(self, opt, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        sanitize_grads(p for group in getattr(opt, "optimizer", opt).param_groups for p in group["params"])
        opt.step()

    def real_images(self, batch: Dict[str, Any]) -> torch.Tensor:
        """The batch's images, checked, cut to a whole number of minibatch-stddev groups."""
        real = batch["B"]
        expected = (self.net_d.img_channels, self.cfg.resolution, self.cfg.resolution)
        if real.ndim != 4 or tuple(real.shape[1:]) != expected:
            raise ConfigError(f"stylegan2: expected images (N, {', '.join(map(str, expected))}) "
                              f"(model.resolution, data.output_nc), got {tuple(real.shape)}", key="model.resolution")
        return whole_groups(real, self.cfg.mbstd_group_size)

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        c = self.cfg
        opt_g, opt_d = self.optimizers()
        real = self.real_images(batch)
        n = real.shape[0]
        logs: Dict[str, torch.Tensor] = {}

        with self.toggled_optimizer(opt_g):
            fake, _ = self.sample(n)
            logs["train/G"] = loss_g = g_nonsaturating(self.net_d(self.augment(fake)))
            self._step(opt_g, loss_g)
            if c.pl_weight > 0 and self.n_minibatches % c.g_reg_interval == 0:
                loss_pl, logs["train/pl_length"] = self.path_length_penalty(n)
                logs["train/G_pl"] = loss_pl
                self._step(opt_g, loss_pl * c.g_reg_interval)

        with self.toggled_optimizer(opt_d):
            with torch.no_grad():
                fake, _ = self.sample(n)
            real_logits, fake_logits = self.net_d(self.augment(real)), self.net_d(self.augment(fake))
            logs["train/D"] = loss_d = d_logistic(real_logits, fake_logits)
            logs["train/D_real"], logs["train/D_fake"] = real_logits.detach().mean(), fake_logits.detach().mean()
            self._step(opt_d, loss_d)
            if c.r1_gamma > 0 and self.n_minibatches % c.d_reg_interval == 0:
                logs["train/D_r1"] = loss_r1 = self.r1_penalty(real)
                self._step(opt_d, loss_r1 * c.d_reg_interval)

        self.update_ema(n * self.trainer.world_size)
        self.n_minibatches += 1
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=n)
        if self.image_every_n_steps and self.n_minibatches % self.image_every_n_steps == 0:
            self.log_samples("train/samples")

    @torch.no_grad()
    def update_ema(self, batch_images: int) -> None:
        """G_ema <- beta G_ema + (1 - beta) G with beta = 0.5 ** (batch / half-life); buffers copied from G."""
        c = self.cfg
        half_life = c.ema_kimg * 1000
        if c.ema_rampup is not None:
            half_life = min(half_life, self.n_seen * c.ema_rampup)
        beta = 0.5 ** (batch_images / max(half_life, 1e-8))
        for p_ema, p in zip(self.g_ema.parameters(), self.net_g.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.g_ema.buffers(), self.net_g.buffers()):
            b_ema.copy_(b)
        self.n_seen += batch_images

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["stylegan2_progress"] = {"n_seen": self.n_seen, "n_minibatches": self.n_minibatches}

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        progress = checkpoint.get("stylegan2_progress", {})
        self.n_seen = int(progress.get("n_seen", 0))
        self.n_minibatches = int(progress.get("n_minibatches", 0))

    # ---- evaluation: a grid of G_ema samples for fixed seeds -----------------------------------------------------
    @torch.no_grad()
    def samples(self, seeds: List[int], truncation_psi: float = 1.0) -> torch.Tensor:
        from priors.generate import z_for

        z = z_for(seeds, self.cfg.z_dim).to(self.device)
        return self.g_ema(z, truncation_psi=truncation_psi, noise_mode="const")

    def log_samples(self, key: str) -> None:
        if self._trainer is None:
            return
        side = max(1, int(math.isqrt(self.cfg.val_samples)))
        images = self.samples(list(range(side * side)), self.cfg.val_truncation)
        log_images(self.trainer.loggers, key, list(images.chunk(side)), step=self.n_minibatches, n=side,
                   caption=self.grid_caption, image_dir=self.image_dir)

    def inference_net(self) -> nn.Module:
        return self.g_ema

    def validation_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        pass  # nothing to score against: a prior is judged by its samples

    def on_validation_epoch_end(self) -> None:
        self.log_samples("val/samples")

    def test_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        pass

    def on_test_epoch_end(self) -> None:
        self.log_samples("test/samples")

    # ---- export: G_ema in the prior format ----------------------------------------------------------------------
    def export_to(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write G_ema as a prior (prior.safetensors + prior.json in the folder `out`), readable by load_prior."""
        from priors.loaders import PRIOR_JSON, save_prior

        out = Path(out)
        if (out / PRIOR_JSON).exists() and not overwrite:
            raise FileExistsError(f"{out} already holds a prior; pass --overwrite to replace it")
        return save_prior(self.g_ema, out)
