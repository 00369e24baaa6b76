"""What every translation method shares: validation metrics, image grids, per-epoch LR schedules."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torchmetrics import MeanAbsoluteError
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from datamodules.io import write_image
from translate.methods.schedules import EpochSchedule, build_scheduler
from translate.methods.images import image_arrays, log_images
from translate.methods.interface import Method


@dataclass
class GANConfig(EpochSchedule):
    """Options pix2pix and CycleGAN share (names and defaults of the reference's train options): their nets, Adam
    and the per-epoch LR schedule (EpochSchedule's fields). Each method redeclares the defaults it has its own of."""

    netG: str = "unet_256"  # generator architecture (a key of nets.GENERATORS)
    ngf: int = 64  # generator filters in the last conv layer
    num_downs: Optional[int] = None  # netG "unet": number of downsamplings (image side must be a multiple of 2**num_downs)
    n_blocks: Optional[int] = None  # netG "resnet": number of residual blocks
    netD: str = "basic"  # discriminator: basic (70x70 PatchGAN) | n_layers | pixel
    ndf: int = 64  # discriminator filters in the first conv layer
    n_layers_D: int = 3  # netD "n_layers": number of strided conv layers
    norm: str = "batch"  # batch | instance | none
    use_dropout: bool = True  # dropout in the generator (U-Net: its inner decoder blocks)
    init_type: str = "normal"  # normal | xavier | kaiming | orthogonal
    init_gain: float = 0.02  # scale of the initialisation
    gan_mode: str = "vanilla"  # vanilla | lsgan | hinge | wgangp
    lambda_gp: float = 10.0  # weight of the gradient penalty (gan_mode wgangp)
    lr: float = 2e-4  # Adam learning rate of G and D
    beta1: float = 0.5  # Adam beta1
    beta2: float = 0.999  # Adam beta2
    channels_last: bool = False  # channels_last memory format (pays on GPUs with tensor cores)


class TranslationModule(Method):
    """Base of the translation methods (translate.methods.interface.Method, exporting a translator): subclasses
    build their nets, write `training_step`, `inference_net` and `export_spec`.

    Validation/test translate `batch["A"]` with `inference_net()` and score it against `batch["B"]` (PSNR, SSIM, L1
    on images mapped to [0, 1]); the first batch is logged as an image grid input | output | target. A method
    overrides `_eval_step` to log other grids (`self._grids`: key -> (columns, caption)) or to score otherwise.
    With `save_images_dir` set (`validate`/`test --save-images DIR`), every sample's images are written as
    DIR/<kind>/<stem>.png: input/, output/, target/ here (`evaluate --pred DIR/output --ref DIR/target`).
    """

    grid_caption = "input | output | target"

    def __init__(self, model: Any, input_nc: int = 3, output_nc: int = 3, direction: str = "AtoB") -> None:
        super().__init__(model, input_nc, output_nc, direction)
        self.automatic_optimization = False
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))  # mean of per-image PSNR
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.val_l1 = MeanAbsoluteError()
        # set by the runner (translate.train.runner.configure_tracking); plain defaults keep the module usable alone
        self.image_every_n_steps = 0
        self.n_images = 4
        self.image_dir: Optional[Path] = None
        self.save_images_dir: Optional[Path] = None
        self.checkpoint_monitor: Optional[str] = None  # checkpoint.monitor of the run (for advice in warnings)
        self._infer: Optional[nn.Module] = None
        self._grids: Optional[Dict[str, Tuple[List[torch.Tensor], str]]] = None  # key -> (columns, caption)

    # ---- shared by the GAN methods (pix2pix, CycleGAN): `self.cfg` has lr, beta1/2, the LR policy, channels_last --
    def gan_optimizers(self, generator_params, discriminator_params):
        """Adam for the generators and for the discriminators, each with the per-epoch LR schedule of the config."""
        c: GANConfig = self.cfg
        opts = [torch.optim.Adam(list(params), lr=c.lr, betas=(c.beta1, c.beta2))
                for params in (generator_params, discriminator_params)]
        return opts, [build_scheduler(o, c.lr_policy, c.n_epochs, c.n_epochs_decay, c.lr_decay_iters) for o in opts]

    def prepare_pair(self, batch: Dict[str, Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        """batch["A"], batch["B"], in channels_last when the config asks for it."""
        real_a, real_b = batch["A"], batch["B"]
        if self.cfg.channels_last:
            real_a = real_a.contiguous(memory_format=torch.channels_last)
            real_b = real_b.contiguous(memory_format=torch.channels_last)
        return real_a, real_b

    # ---- shared hooks -----------------------------------------------------------------------------------------
    def on_train_epoch_end(self) -> None:
        scheds = self.lr_schedulers()
        scheds = scheds if isinstance(scheds, list) else [scheds]
        for sched in scheds:
            sched.step()
        self.log("train/lr", float(scheds[0].get_last_lr()[0]), on_epoch=True, on_step=False)

    def maybe_log_train_images(self, rows: Sequence[torch.Tensor], key: str = "train/images") -> None:
        if self._trainer is None or not self.image_every_n_steps:
            return
        if self.trainer.fit_loop.epoch_loop.total_batch_idx % self.image_every_n_steps == 0:
            self.log_grid(key, rows)

    def log_grid(self, key: str, rows: Sequence[torch.Tensor], caption: Optional[str] = None) -> None:
        if self._trainer is None:
            return
        log_images(self.trainer.loggers, key, rows, step=self.global_step, n=self.n_images,
                   caption=caption or self.grid_caption, image_dir=self.image_dir)

    def save_images(self, images: Dict[str, torch.Tensor], paths: Sequence[str]) -> None:
        """Write every image of `images` (kind -> (N, C, H, W) in [-1, 1]) as save_images_dir/<kind>/<stem>.png,
        named after its sample's source file in `paths`, atomically (PNG: lossless, for `evaluate`)."""
        if self.save_images_dir is None:
            return
        for kind, batch in images.items():
            for path, image in zip(paths, image_arrays(batch)):
                write_image(self.save_images_dir / kind / f"{Path(path).stem}.png", image)

    def _eval_start(self) -> None:
        self._infer = self.inference_net()
        self._grids = None

    def score(self, fake_b: torch.Tensor, real_b: torch.Tensor, prefix: str) -> None:
        """Accumulate PSNR, SSIM and L1 of translations against their true targets (both in [-1, 1])."""
        out, ref = ((fake_b.float() + 1) / 2).clamp(0, 1), (real_b.float() + 1) / 2
        self.val_psnr(out, ref)
        self.val_ssim(out, ref)
        self.val_l1(out, ref)
        self.log_dict(
            {f"{prefix}/psnr": self.val_psnr, f"{prefix}/ssim": self.val_ssim, f"{prefix}/l1": self.val_l1},
            on_step=False, on_epoch=True, batch_size=fake_b.shape[0], sync_dist=True, prog_bar=True,
        )

    def _eval_step(self, batch: Dict[str, Any], batch_idx: int, prefix: str) -> None:
        real_a, real_b = batch["A"], batch["B"]
        fake_b = self._infer(real_a)
        self.score(fake_b, real_b, prefix)
        self.save_images({"input": real_a, "output": fake_b, "target": real_b}, batch["A_path"])
        if batch_idx == 0:
            self._grids = {"images": ([real_a, fake_b, real_b], self.grid_caption)}

    def _eval_end(self, prefix: str) -> None:
        for name, (rows, caption) in (self._grids or {}).items():
            self.log_grid(f"{prefix}/{name}", rows, caption=caption)
        self._infer = self._grids = None

    def on_validation_epoch_start(self) -> None:
        self._eval_start()

    def validation_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_start(self) -> None:
        self._eval_start()

    def test_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")
