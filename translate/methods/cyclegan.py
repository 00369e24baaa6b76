"""CycleGAN (Zhu et al. 2017): two generators G_A: A -> B and G_B: B -> A, two PatchGANs D_A (judges B) and D_B
(judges A); adversarial + cycle-consistency + identity losses, discriminators fed from pools of past fakes."""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from nets import build_discriminator, build_generator, generator_spec, inference_copy
from safeio.errors import ConfigError
from translate.methods.base import GANConfig, TranslationModule
from translate.methods.losses import check_gan_mode, d_loss, g_loss, gradient_penalty

DIRECTIONS = ("AtoB", "BtoA")
POOL_REUSE_P = 0.5  # probability that a full pool answers with a stored image (and keeps the new one instead)


@dataclass
class CycleGANConfig(GANConfig):
    """CycleGAN options; names and defaults follow the reference implementation's train options (the nets, Adam and
    LR schedule: translate.methods.base.GANConfig)."""

    netG: str = "resnet_9blocks"  # generator architecture of G_A and G_B (a key of nets.GENERATORS)
    norm: str = "instance"  # instance | batch | none
    use_dropout: bool = False  # dropout in the generators (reference CycleGAN: off)
    gan_mode: str = "lsgan"  # lsgan | vanilla | hinge | wgangp
    lambda_A: float = 10.0  # weight of the cycle loss A -> B -> A
    lambda_B: float = 10.0  # weight of the cycle loss B -> A -> B
    lambda_identity: float = 0.5  # identity loss weight, as a fraction of lambda_A / lambda_B (0 = off)
    pool_size: int = 50  # past fakes kept for the discriminators (0 = no pool)


class ImagePool:
    """A buffer of generated images (Shrivastava et al. 2017) that the discriminators see instead of only the
    newest fakes.

    pool_size 0: `query` returns its input. Otherwise each image of the batch, while the pool is not full, is stored
    and returned; once it is full, with probability 1/2 a random stored image is returned and the new one takes its
    place, else the new image is returned and the pool is unchanged. Draws come from torch's default generator.
    Returned images are detached.
    """

    def __init__(self, pool_size: int):
        if pool_size < 0:
            raise ConfigError(f"model.pool_size: expected a number >= 0, got {pool_size}", key="model.pool_size")
        self.pool_size = pool_size
        self.images: List[torch.Tensor] = []  # each (1, C, H, W)

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.pool_size == 0:
            return images.detach()
        out = []
        for image in images.detach().split(1):
            if len(self.images) < self.pool_size:
                self.images.append(image)
                out.append(image)
            elif float(torch.rand(())) < POOL_REUSE_P:
                i = int(torch.randint(self.pool_size, ()))
                out.append(self.images[i].to(image.device))
                self.images[i] = image
            else:
                out.append(image)
        return torch.cat(out)

    def state(self) -> Optional[torch.Tensor]:
        """The stored images as one tensor (n, C, H, W) on the CPU, or None when empty (for checkpoints)."""
        return torch.cat(self.images).cpu() if self.images else None

    def load(self, images: Optional[torch.Tensor]) -> None:
        self.images = [] if images is None else list(images[: self.pool_size].split(1))


class CycleGAN(TranslationModule):
    config_class = CycleGANConfig
    export_directions = DIRECTIONS

    def __init__(self, model: CycleGANConfig, input_nc: int = 3, output_nc: int = 3, direction: str = "AtoB"):
        super().__init__(model, input_nc, output_nc, direction)
        c = self.cfg
        check_gan_mode(c.gan_mode)
        if c.lambda_identity > 0 and input_nc != output_nc:
            raise ConfigError(f"model.lambda_identity {c.lambda_identity} needs as many channels in A as in B "
                              f"(G_A(real_B) must be defined), got data.input_nc={input_nc}, data.output_nc="
                              f"{output_nc}; set model.lambda_identity=0", key="model.lambda_identity")

        def generator(in_nc: int, out_nc: int) -> nn.Module:
            return build_generator(c.netG, in_nc, out_nc, ngf=c.ngf, norm=c.norm, use_dropout=c.use_dropout,
                                   num_downs=c.num_downs, n_blocks=c.n_blocks, init_type=c.init_type,
                                   init_gain=c.init_gain)

        def discriminator(in_nc: int) -> nn.Module:
            return build_discriminator(c.netD, in_nc, ndf=c.ndf, n_layers=c.n_layers_D, norm=c.norm,
                                       init_type=c.init_type, init_gain=c.init_gain)

        # built and initialised one after the other in the reference's order (as its versions before 2025 did)
        self.net_g_a = generator(input_nc, output_nc)  # A -> B
        self.net_g_b = generator(output_nc, input_nc)  # B -> A
        self.net_d_a = discriminator(output_nc)  # real B vs G_A(A)
        self.net_d_b = discriminator(input_nc)  # real A vs G_B(B)
        self.fake_a_pool = ImagePool(c.pool_size)
        self.fake_b_pool = ImagePool(c.pool_size)
        self._warned_no_truth = False
        if c.channels_last:
            self.to(memory_format=torch.channels_last)

    # ---- training ---------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        return self.gan_optimizers([*self.net_g_a.parameters(), *self.net_g_b.parameters()],
                                   [*self.net_d_a.parameters(), *self.net_d_b.parameters()])

    def discriminator_loss(self, net_d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """0.5 * (GAN(D(real), real) + GAN(D(fake), fake)): halved, as in the reference, to slow D down."""
        mode = self.cfg.gan_mode
        loss = 0.5 * (d_loss(net_d(real), True, mode) + d_loss(net_d(fake), False, mode))
        if mode == "wgangp":
            loss = loss + self.cfg.lambda_gp * gradient_penalty(net_d, real, fake)
        return loss

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        c = self.cfg
        opt_g, opt_d = self.optimizers()
        real_a, real_b = self.prepare_pair(batch)

        with self.toggled_optimizer(opt_g):  # D_A and D_B frozen
            fake_b = self.net_g_a(real_a)
            rec_a = self.net_g_b(fake_b)
            fake_a = self.net_g_b(real_b)
            rec_b = self.net_g_a(fake_a)
            loss_g_a = g_loss(self.net_d_a(fake_b), c.gan_mode)
            loss_g_b = g_loss(self.net_d_b(fake_a), c.gan_mode)
            loss_cycle_a = c.lambda_A * (rec_a - real_a).abs().mean()  # || G_B(G_A(a)) - a ||_1
            loss_cycle_b = c.lambda_B * (rec_b - real_b).abs().mean()  # || G_A(G_B(b)) - b ||_1
            if c.lambda_identity > 0:  # a generator should leave images of its target domain unchanged
                loss_idt_a = c.lambda_B * c.lambda_identity * (self.net_g_a(real_b) - real_b).abs().mean()
                loss_idt_b = c.lambda_A * c.lambda_identity * (self.net_g_b(real_a) - real_a).abs().mean()
            else:
                loss_idt_a = loss_idt_b = torch.zeros((), device=real_a.device)
            loss_g = loss_g_a + loss_g_b + loss_cycle_a + loss_cycle_b + loss_idt_a + loss_idt_b
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()

        with self.toggled_optimizer(opt_d):  # on the fakes made before G's update, some of them from the pools
            loss_d_a = self.discriminator_loss(self.net_d_a, real_b, self.fake_b_pool.query(fake_b))
            loss_d_b = self.discriminator_loss(self.net_d_b, real_a, self.fake_a_pool.query(fake_a))
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d_a + loss_d_b)  # disjoint parameters: the two reference backward passes
            opt_d.step()

        self.log_dict(
            {"train/G_A": loss_g_a, "train/G_B": loss_g_b, "train/cycle_A": loss_cycle_a,
             "train/cycle_B": loss_cycle_b, "train/idt_A": loss_idt_a, "train/idt_B": loss_idt_b, "train/G": loss_g,
             "train/D_A": loss_d_a, "train/D_B": loss_d_b},
            on_step=True, on_epoch=False, batch_size=real_a.shape[0],
        )
        self.maybe_log_train_images([real_a, fake_b, rec_a, real_b, fake_a, rec_b])

    # the pools are training state: kept in checkpoints so that a resumed run continues with them
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["image_pools"] = {"fake_A": self.fake_a_pool.state(), "fake_B": self.fake_b_pool.state()}

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        pools = checkpoint.get("image_pools") or {}
        self.fake_a_pool.load(pools.get("fake_A"))
        self.fake_b_pool.load(pools.get("fake_B"))

    # ---- evaluation -------------------------------------------------------------------------------------------
    def inference_net(self, direction: str = "AtoB") -> nn.Module:
        """G_A (AtoB) or G_B (BtoA) as used at test time: BatchNorm (if any) with each image's own statistics, as
        the reference tests, and no dropout."""
        return inference_copy(self._generator(direction), norm_stats="sample", dropout=False)

    def _generator(self, direction: str) -> nn.Module:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction: expected one of {list(DIRECTIONS)}, got '{direction}'")
        return self.net_g_a if direction == "AtoB" else self.net_g_b

    def _eval_start(self) -> None:
        super()._eval_start()
        self._infer_b = self.inference_net("BtoA")

    def _eval_step(self, batch: Dict[str, Any], batch_idx: int, prefix: str) -> None:
        """Score G_A(A) against B where B is A's true counterpart (batch["paired"], e.g. the synthetic unpaired
        set's hidden truth); unaligned folders have none. Grids: real_A | fake_B | rec_A, real_B | fake_A | rec_B."""
        real_a, real_b = batch["A"], batch["B"]
        fake_b = self._infer(real_a)
        paired = batch.get("paired")
        if paired is None or bool(paired.all()):
            self.score(fake_b, real_b, prefix)
        elif not self._warned_no_truth:
            self._warned_no_truth = True
            monitor = getattr(self, "checkpoint_monitor", None)
            advice = (f"; checkpoint.monitor {monitor} cannot choose a best checkpoint: use checkpoint.monitor null"
                      if monitor and monitor.split("/")[-1] in ("psnr", "ssim", "l1") else "")
            warnings.warn(f"{prefix}: the data has no true counterparts of its A images (unaligned folders), so "
                          f"{prefix}/psnr and {prefix}/ssim are not computed{advice}",
                          stacklevel=2)
        if self.save_images_dir is None and batch_idx != 0:
            return
        fake_a = self._infer_b(real_b)  # both directions' translations and reconstructions, computed once
        side_a = {"real_A": real_a, "fake_B": fake_b, "rec_A": self._infer_b(fake_b)}
        side_b = {"real_B": real_b, "fake_A": fake_a, "rec_B": self._infer(fake_a)}
        if self.save_images_dir is not None:  # the reference's test results, one folder per kind
            self.save_images(side_a, batch["A_path"])
            self.save_images(side_b, batch["B_path"])
        if batch_idx == 0:
            self._grids = {"images_A": (list(side_a.values()), "real_A | fake_B | rec_A"),
                           "images_B": (list(side_b.values()), "real_B | fake_A | rec_B")}

    def _eval_end(self, prefix: str) -> None:
        super()._eval_end(prefix)
        self._infer_b = None

    # ---- export -----------------------------------------------------------------------------------------------
    def export_spec(self, direction: Optional[str] = None) -> Tuple[nn.Module, Dict[str, Any]]:
        """G_A (direction AtoB, the default) or G_B (BtoA) for inference, and its bundle metadata."""
        direction = direction or "AtoB"
        net = self.inference_net(direction)
        a_nc, b_nc = self.hparams.input_nc, self.hparams.output_nc
        meta = {
            "method": "cyclegan",
            "input_nc": a_nc if direction == "AtoB" else b_nc,
            "output_nc": b_nc if direction == "AtoB" else a_nc,
            "value_range": [-1.0, 1.0],
            "size_multiple": int(net.size_multiple),
            "direction": direction,
            "data_direction": self.hparams.direction,  # which folder the training data called A (data.direction)
            "norm_stats": "sample",
            "generator": generator_spec(net),
            "model_config": asdict(self.cfg),
        }
        return net, meta
