"""pix2pix (Isola et al. 2017): U-Net generator + conditional PatchGAN, adversarial + lambda * L1 loss."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Tuple

import torch
from torch import nn

from nets import build_discriminator, build_generator, generator_spec, inference_copy
from safeio.errors import ConfigError
from translate.methods.base import GANConfig, TranslationModule
from translate.methods.losses import check_gan_mode, d_loss, g_loss, gradient_penalty

TEST_MODES = ("train", "batchstats", "eval")


@dataclass
class Pix2PixConfig(GANConfig):
    """pix2pix options; names and defaults follow the reference implementation's train options (the nets, Adam and
    LR schedule: translate.methods.base.GANConfig)."""

    netG: str = "unet_256"  # generator architecture (a key of nets.GENERATORS)
    norm: str = "batch"  # batch | instance | none
    use_dropout: bool = True  # dropout in the U-Net's inner decoder blocks (reference pix2pix: on)
    gan_mode: str = "vanilla"  # vanilla | lsgan | hinge | wgangp
    lambda_l1: float = 100.0  # weight of the L1 term (pix2pix paper)
    test_mode: str = "train"  # train: BN batch stats + dropout at test (reference) | batchstats: no dropout | eval


class Pix2Pix(TranslationModule):
    config_class = Pix2PixConfig

    def __init__(self, model: Pix2PixConfig, input_nc: int = 3, output_nc: int = 3, direction: str = "AtoB"):
        super().__init__(model, input_nc, output_nc, direction)
        cfg = self.cfg
        check_gan_mode(cfg.gan_mode)
        if cfg.test_mode not in TEST_MODES:
            raise ConfigError(f"model.test_mode: expected one of {list(TEST_MODES)}, got '{cfg.test_mode}'",
                              key="model.test_mode")
        self.net_g = build_generator(
            cfg.netG, input_nc, output_nc, ngf=cfg.ngf, norm=cfg.norm, use_dropout=cfg.use_dropout,
            num_downs=cfg.num_downs, n_blocks=cfg.n_blocks, init_type=cfg.init_type, init_gain=cfg.init_gain,
        )
        self.net_d = build_discriminator(
            cfg.netD, input_nc + output_nc, ndf=cfg.ndf, n_layers=cfg.n_layers_D, norm=cfg.norm,
            init_type=cfg.init_type, init_gain=cfg.init_gain,
        )
        if cfg.channels_last:
            self.to(memory_format=torch.channels_last)

    # ---- training ---------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        return self.gan_optimizers(self.net_g.parameters(), self.net_d.parameters())

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        c = self.cfg
        opt_g, opt_d = self.optimizers()
        real_a, real_b = self.prepare_pair(batch)
        fake_b = self.net_g(real_a)
        real_ab = torch.cat([real_a, real_b], 1)
        fake_ab = torch.cat([real_a, fake_b], 1)  # conditional GAN: D sees the input with the output

        with self.toggled_optimizer(opt_d):
            loss_d_fake = d_loss(self.net_d(fake_ab.detach()), False, c.gan_mode)
            loss_d_real = d_loss(self.net_d(real_ab), True, c.gan_mode)
            loss_d = 0.5 * (loss_d_fake + loss_d_real)
            if c.gan_mode == "wgangp":
                loss_d = loss_d + c.lambda_gp * gradient_penalty(self.net_d, real_ab, fake_ab.detach())
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            opt_d.step()

        with self.toggled_optimizer(opt_g):
            loss_g_gan = g_loss(self.net_d(fake_ab), c.gan_mode)
            loss_g_l1 = c.lambda_l1 * (fake_b - real_b).abs().mean()
            loss_g = loss_g_gan + loss_g_l1
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()

        self.log_dict(
            {"train/D_fake": loss_d_fake, "train/D_real": loss_d_real, "train/D": loss_d,
             "train/G_GAN": loss_g_gan, "train/G_L1": loss_g_l1, "train/G": loss_g},
            on_step=True, on_epoch=False, batch_size=real_a.shape[0],
        )
        self.maybe_log_train_images([real_a, fake_b, real_b])

    # ---- evaluation -------------------------------------------------------------------------------------------
    def _norm_stats(self) -> str:
        return "running" if self.cfg.test_mode == "eval" else "sample"

    def inference_net(self) -> nn.Module:
        """The generator as used at test time (see `test_mode`); deterministic unless test_mode is `train`."""
        return inference_copy(self.net_g, norm_stats=self._norm_stats(), dropout=self.cfg.test_mode == "train")

    # ---- export -----------------------------------------------------------------------------------------------
    def export_spec(self) -> Tuple[nn.Module, Dict[str, Any]]:
        """The deterministic inference net and the bundle metadata (translator.json)."""
        stats = self._norm_stats()
        net = inference_copy(self.net_g, norm_stats=stats, dropout=False)
        meta = {
            "method": "pix2pix",
            "input_nc": self.hparams.input_nc,
            "output_nc": self.hparams.output_nc,
            "value_range": [-1.0, 1.0],
            "size_multiple": int(self.net_g.size_multiple),
            "direction": self.hparams.direction,
            "norm_stats": stats,
            "generator": generator_spec(self.net_g),
            "model_config": asdict(self.cfg),
        }
        return net, meta
