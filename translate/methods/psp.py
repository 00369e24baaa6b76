"""pSp (Richardson et al. 2021): an encoder into the W+ space of a frozen, pretrained StyleGAN2 generator.

image -> encoder -> W+ offsets (+ the prior's average latent) -> frozen StyleGAN2 -> image, average-pooled to the loss
resolution. Losses (weights in the config, the paper's per task in configs/psp/): L2, LPIPS, identity (ArcFace
IR-SE50 cosine on the inner face crop pooled to 112 px), W-norm (the non-squared distance of the codes to the
average latent), the inner-crop L2/LPIPS of frontalization, and a MoCo-feature similarity for non-face domains.

e4e (Tov et al. 2021, `model.encoder_type: Encoder4Editing`): codes near one w, for editing. Progressive training
(`progressive_start`, `progressive_step_every`: w0 alone first, then one more per-layer delta every so many steps; the
stage follows the step count, which checkpoints keep), the delta regulariser (the unsquared norm of each code row's
difference to row 0) and a latent-code discriminator (nets.psp.LatentCodesDiscriminator, softplus losses, lazy R1 on
the mapping network's codes, an optional pool of past codes) whose adversarial term keeps the codes in W. The
discriminator is in checkpoints (resume), never in bundles.

The prior and every loss network stay frozen and in eval mode whatever Lightning toggles. Loss networks are not
part of the module's state dict (checkpoints hold `net.encoder.*`, `net.decoder.*`, `net.latent_avg`), so a
checkpoint does not carry 100+ MB of ArcFace weights. Their weight files come from the config; a missing file is
an error that names the key. The value `random` builds a randomly initialised network instead: the loss is then
meaningless, which is only useful for smoke tests.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from nets.encoders import ENCODERS, PAPER_CHANNELS, build_encoder, load_arcface, load_backbone_weights
from nets.psp import LatentCodesDiscriminator, PSPNet
from nets.similarity import RANDOM, IDLoss, MocoLoss, face_crop, load_moco
from safeio import ConfigError, LoadError, strict_load
from priors.loaders import load_prior
from priors.stylegan2 import Discriminator, DiscriminatorConfig, Generator
from translate.methods.base import TranslationModule
from translate.methods.losses import d_logistic, g_nonsaturating, r1_penalty, whole_groups
from translate.methods.optim import build_optimizer, psp_decoder_groups

def _n_styles_for_decoder(decoder) -> Dict[str, int]:
    """The encoder's n_styles where the decoder is not a StyleGAN2 (whose count follows from its resolution): a
    StyleGAN3 decoder takes num_ws = num_layers + 2 codes at any resolution."""
    return {} if isinstance(decoder, Generator) else {"n_styles": decoder.num_ws}


TEST_ARCFACE_CHANNELS = (8, 8, 16, 16)  # width of the random ArcFace built for `id_weights: random`
E4E = "Encoder4Editing"  # the encoder_type of e4e


@dataclass
class PSPConfig:
    """pSp options; names follow the reference's train options where it has one."""

    prior: Optional[str] = None  # the frozen StyleGAN2: a prior folder, NVIDIA .pkl/.pt, rosinality .pt (required)
    encoder_type: str = "GradualStyleEncoder"  # GradualStyleEncoder | BackboneEncoderUsingLastLayerIntoW(Plus) |
    #                                            Encoder4Editing (e4e)
    num_layers: int = 50  # IR-SE depth: 50 | 100 | 152
    mode: str = "ir_se"  # ir | ir_se
    channels: List[int] = field(default_factory=lambda: list(PAPER_CHANNELS))  # stage widths (small for tests)
    input_size: int = 256  # encoder input side; inputs of another size are an error (resize in the data config)
    encoder_weights: Optional[str] = None  # ArcFace IR-SE50 file to initialise the encoder's backbone (pSp does), or
    #                                       a pSp checkpoint whose encoder.* starts the whole encoder (fine-tuning)
    start_from_latent_avg: bool = True  # add the prior's average latent to the predicted codes
    loss_size: int = 256  # the output is average-pooled to this side before the losses (and validation)
    l2_lambda: float = 1.0
    lpips_lambda: float = 0.8
    id_lambda: float = 0.1
    w_norm_lambda: float = 0.0
    l2_lambda_crop: float = 0.0  # frontalization: L2 on the inner face crop
    lpips_lambda_crop: float = 0.0  # frontalization: LPIPS on the inner face crop
    moco_lambda: float = 0.0  # MoCo-feature similarity, for non-face domains (exclusive with id_lambda)
    lpips_net: str = "alex"  # LPIPS backbone: alex (pSp) | vgg
    lpips_backbone: Optional[str] = None  # torchvision AlexNet/VGG16 state dict file
    lpips_weights: Optional[str] = None  # LPIPS linear heads (alex.pth / vgg.pth of PerceptualSimilarity v0.1)
    id_weights: Optional[str] = None  # ArcFace IR-SE50 (model_ir_se50.pth)
    moco_weights: Optional[str] = None  # MoCo v2 ResNet-50 checkpoint (moco_v2_800ep_pretrain.pt)
    optim_name: str = "ranger"  # ranger | adam
    learning_rate: float = 1e-4
    train_decoder: bool = False  # also fine-tune the StyleGAN2 generator (pSp's option; off in the paper)
    latent_mask: List[int] = field(default_factory=list)  # style-mixing layers for multi-modal output (e.g. 8..17)
    mix_alpha: Optional[float] = None  # mixing weight of the random codes on latent_mask (None = replace)
    train_noise: str = "random"  # the prior's noise inputs while training: random (pSp) | const, the fixed maps that
    #                              validation, export and predict use (so training optimises what they output)
    restyle_iters: int = 0  # ReStyle: > 0 trains an encoder of [input, reconstruction] for this many residual steps
    #                         per batch from the average latent's image (the ReStyle paper: 5); 0 = plain pSp
    feature_res: int = 0  # > 0: the encoder also predicts an offset to the prior's features at this resolution (one
    #                       of its block resolutions, e.g. 64 for a 1024-px prior, 16 for the 64-px toy prior) from
    #                       its finest pyramid map (nets.psp.FeatureHead); 0 = plain pSp (codes only)
    # domain-guided encoder training (In-Domain GAN Inversion, Zhu et al. 2020): a StyleGAN2 discriminator at the loss
    # resolution learns targets from outputs (logistic loss + R1) and the encoder also minimises its non-saturating
    # loss, which keeps the reconstructions, and so the codes, in the generator's domain
    adv_lambda: float = 0.0  # weight of the encoder's adversarial term (the paper: 0.1); 0 = no discriminator
    discriminator_weights: Optional[str] = None  # start D from a trained one (the paper starts from the GAN's D): an
    #   NVIDIA network .pkl (its D) or a `method: stylegan2` checkpoint of this framework; None = random init
    d_channel_base: int = 32768  # D's feature maps at resolution r: min(d_channel_base // r, d_channel_max);
    d_channel_max: int = 512  # a loaded D must have this architecture (config F: 32768 / 512)
    d_mbstd_group_size: int = 4  # D's minibatch-stddev group
    d_learning_rate: float = 1e-4  # Adam for D (the paper: 1e-4, betas 0.9 / 0.99)
    d_betas: List[float] = field(default_factory=lambda: [0.9, 0.99])
    r1_gamma: float = 10.0  # R1 on the targets: gamma / 2 * |grad D(y)|^2 (the paper: 10; 0 = off)
    d_reg_interval: int = 1  # R1 every this many steps, its loss scaled by the interval (1 = every step, as the paper;
    #                          e4e's latent discriminator: 16)
    # e4e (Tov et al. 2021; defaults as its train options, the README's values in configs/psp/e4e_encode.yaml)
    progressive_start: Optional[int] = None  # Encoder4Editing: train w0 alone for this many steps, then add deltas
    #                                          (README: 20000); None = every delta from step 0 and no delta loss
    progressive_step_every: Optional[int] = None  # one more delta every this many steps (README: 2000)
    delta_norm: int = 2  # p of the delta regulariser's norm |codes[:, i] - codes[:, 0]|_p (not squared)
    delta_norm_lambda: float = 2e-4  # weight of the delta regulariser (active with progressive training)
    w_discriminator_lambda: float = 0.0  # weight of the latent discriminator's term (README: 0.1); 0 = no latent D
    w_discriminator_lr: float = 2e-5  # Adam (default betas) for the latent discriminator
    use_w_pool: bool = False  # the latent discriminator sees codes through a pool of past ones (README: on)
    w_pool_size: int = 50  # codes the pool keeps


# ---- loss networks (nets.similarity) -------------------------------------------------------------------------
def _naming_the_key(key: str, load, *args):
    """load(*args), with the config key that named the file put in front of any error about it."""
    try:
        return load(*args)
    except (FileNotFoundError, ValueError) as e:  # ValueError: PriorLoadError, CheckpointError
        raise type(e)(f"{key}: {e}") from e


def _random_warning(what: str) -> None:
    warnings.warn(f"{what}: randomly initialised (weights 'random'): this loss is meaningless; for smoke tests only",
                  stacklevel=3)


def build_loss_nets(cfg: PSPConfig) -> Dict[str, nn.Module]:
    """The frozen networks of the losses with a non-zero weight, from the files the config names."""
    from nets.perceptual import LPIPS, load_lpips

    nets: Dict[str, nn.Module] = {}
    if cfg.lpips_lambda > 0 or cfg.lpips_lambda_crop > 0:
        if cfg.lpips_weights == RANDOM:
            _random_warning("model.lpips_weights")
            nets["lpips"] = LPIPS(cfg.lpips_net)
        else:
            nets["lpips"] = load_lpips(cfg.lpips_net, cfg.lpips_backbone, cfg.lpips_weights,
                                       backbone_key="model.lpips_backbone", heads_key="model.lpips_weights")
    if cfg.id_lambda > 0:
        if cfg.id_weights == RANDOM:
            from nets.encoders import ArcFace

            _random_warning("model.id_weights")
            arcface = ArcFace(channels=TEST_ARCFACE_CHANNELS).eval().requires_grad_(False)
        else:
            arcface = load_arcface(cfg.id_weights, "model.id_weights")
        nets["id"] = IDLoss(arcface)
    if cfg.moco_lambda > 0:
        if cfg.moco_weights == RANDOM:
            _random_warning("model.moco_weights")
        nets["moco"] = MocoLoss(load_moco(cfg.moco_weights))
    return {k: net.eval().requires_grad_(False) for k, net in nets.items()}


def check_config(cfg: PSPConfig) -> None:
    if not cfg.prior:
        raise ConfigError("model.prior must be set: the pretrained StyleGAN2 to translate through (a prior folder "
                          "written by `cli.py convert-prior`/`export`, an NVIDIA .pkl/.pt or a rosinality .pt)",
                          key="model.prior")
    if cfg.encoder_type not in ENCODERS:
        raise ConfigError(f"model.encoder_type: expected one of {sorted(ENCODERS)}, got {cfg.encoder_type!r}",
                          key="model.encoder_type")
    if cfg.id_lambda > 0 and cfg.moco_lambda > 0:
        raise ConfigError("model.id_lambda and model.moco_lambda are both > 0: choose the identity loss (faces) or "
                          "the MoCo loss (other domains)", key="model.id_lambda")
    if cfg.train_noise not in ("random", "const"):
        raise ConfigError(f"model.train_noise: expected random or const, got {cfg.train_noise!r}",
                          key="model.train_noise")
    if cfg.restyle_iters < 0:
        raise ConfigError(f"model.restyle_iters must be >= 0 (0 = plain pSp), got {cfg.restyle_iters}",
                          key="model.restyle_iters")
    if cfg.feature_res < 0:
        raise ConfigError(f"model.feature_res must be >= 0 (0 = plain pSp), got {cfg.feature_res}",
                          key="model.feature_res")
    if cfg.feature_res and cfg.restyle_iters:
        raise ConfigError("model.feature_res and model.restyle_iters are both > 0: a feature offset and ReStyle's "
                          "iterations do not combine; set one of them to 0", key="model.feature_res")
    if cfg.feature_res and cfg.encoder_type != "GradualStyleEncoder":
        raise ConfigError(f"model.feature_res needs model.encoder_type GradualStyleEncoder (the feature head reads "
                          f"its pyramid), got {cfg.encoder_type!r}", key="model.feature_res")
    check_e4e_config(cfg)
    for key in ("l2_lambda", "lpips_lambda", "id_lambda", "w_norm_lambda", "l2_lambda_crop", "lpips_lambda_crop",
                "moco_lambda", "adv_lambda", "r1_gamma", "delta_norm_lambda", "w_discriminator_lambda"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"model.{key} must be >= 0, got {getattr(cfg, key)}", key=f"model.{key}")
    for key in ("d_reg_interval", "d_mbstd_group_size"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"model.{key}: expected a positive integer, got {getattr(cfg, key)}", key=f"model.{key}")
    if len(cfg.d_betas) != 2:
        raise ConfigError(f"model.d_betas: expected [beta1, beta2], got {cfg.d_betas}", key="model.d_betas")
    from nets.perceptual import LPIPS_MIN_SIZE

    side = LPIPS_MIN_SIZE.get(cfg.lpips_net, 0)
    t, b, l, r = face_crop(cfg.loss_size)
    if cfg.lpips_lambda_crop > 0 and min(b - t, r - l) < side:
        raise ConfigError(f"model.lpips_lambda_crop: the inner-face crop of a {cfg.loss_size}-px output is "
                          f"{r - l}x{b - t} px, smaller than LPIPS ({cfg.lpips_net}) takes ({side} px); raise "
                          f"model.loss_size or set model.lpips_lambda_crop 0", key="model.lpips_lambda_crop")
    if cfg.lpips_lambda > 0 and cfg.loss_size < side:
        raise ConfigError(f"model.loss_size {cfg.loss_size} is smaller than LPIPS ({cfg.lpips_net}) takes ({side} px)",
                          key="model.loss_size")


def check_e4e_config(cfg: PSPConfig) -> None:
    if cfg.progressive_start is not None:
        if cfg.encoder_type != E4E:
            raise ConfigError(f"model.progressive_start needs model.encoder_type {E4E} (progressive deltas), got "
                              f"{cfg.encoder_type!r}", key="model.progressive_start")
        if cfg.progressive_start < 0 or not cfg.progressive_step_every or cfg.progressive_step_every < 1:
            raise ConfigError(f"model.progressive_start ({cfg.progressive_start}) must be >= 0 and "
                              f"model.progressive_step_every a positive number of steps, got "
                              f"{cfg.progressive_step_every}", key="model.progressive_start")
    if cfg.delta_norm < 1:
        raise ConfigError(f"model.delta_norm: expected p >= 1, got {cfg.delta_norm}", key="model.delta_norm")
    if cfg.w_discriminator_lambda > 0 and cfg.adv_lambda > 0:
        raise ConfigError("model.w_discriminator_lambda and model.adv_lambda are both > 0: train with e4e's latent "
                          "discriminator or the domain-guided image discriminator, not both",
                          key="model.w_discriminator_lambda")
    if cfg.use_w_pool and cfg.w_pool_size < 1:
        raise ConfigError(f"model.w_pool_size: expected a positive number of codes, got {cfg.w_pool_size}",
                          key="model.w_pool_size")


def progressive_stage(step: int, start: Optional[int], every: Optional[int], n_styles: int) -> int:
    """e4e's stage at a step: the number of per-layer deltas in use. 0 (w0 alone) before `start`, then one more at
    start, start + every, ... up to n_styles - 1 (the reference's progressive_steps [0, start, start + every, ...]);
    every delta when not progressive (start None)."""
    if start is None:
        return n_styles - 1
    if step < start:
        return 0
    return min(1 + (step - start) // every, n_styles - 1)


def delta_loss(codes: torch.Tensor, stage: int, p: int = 2) -> torch.Tensor:
    """e4e's delta regulariser: sum over rows i = 1..stage of the batch mean of |codes[:, i] - codes[:, 0]|_p."""
    deltas = codes[:, 1:stage + 1] - codes[:, :1]  # (N, stage, w_dim)
    return deltas.norm(p=p, dim=2).mean(dim=0).sum()


class LatentCodesPool:
    """e4e's pool of past codes for the latent discriminator (as CycleGAN's image pool): a code (N, w_dim), or one
    random row per sample of (N, rows, w_dim), is stored while the pool fills; a full pool returns, half of the
    time, a stored code in its place (and keeps the new one)."""

    def __init__(self, size: int):
        self.size, self.codes = size, []

    def query(self, ws: torch.Tensor) -> torch.Tensor:
        out = []
        for w in ws:
            if w.dim() == 2:  # (rows, w_dim): one random row
                w = w[int(torch.randint(len(w), ()))]
            if len(self.codes) < self.size:
                self.codes.append(w)
                out.append(w)
            elif float(torch.rand(())) > 0.5:
                i = int(torch.randint(self.size, ()))
                out.append(self.codes[i].clone())
                self.codes[i] = w
            else:
                out.append(w)
        return torch.stack(out)


def build_discriminator(cfg: PSPConfig, channels: int = 3) -> Discriminator:
    """The discriminator of domain-guided training, at the loss resolution, from the config's architecture; with
    `discriminator_weights`, loaded strictly from that file, whose architecture must be the configured one."""
    from priors.loaders import load_discriminator

    want = DiscriminatorConfig(img_resolution=cfg.loss_size, img_channels=channels, channel_base=cfg.d_channel_base,
                               channel_max=cfg.d_channel_max, mbstd_group_size=cfg.d_mbstd_group_size)
    if not cfg.discriminator_weights:
        return Discriminator(want)
    key = f"model.discriminator_weights ({cfg.discriminator_weights})"
    try:
        D = load_discriminator(cfg.discriminator_weights)
    except FileNotFoundError:
        raise FileNotFoundError(f"{key}: file not found (a StyleGAN2 discriminator: NVIDIA .pkl or a stylegan2 "
                                "checkpoint of this framework; null trains one from scratch)") from None
    got = D.config
    checks = [("model.loss_size", want.img_resolution, got.img_resolution),
              ("data.output_nc", want.img_channels, got.img_channels),
              ("model.d_channel_base", want.channel_base, got.channel_base),
              ("model.d_channel_max", want.channel_max, got.channel_max)]
    wrong = [f"{name} is {mine}, the file's D has {theirs}" for name, mine, theirs in checks if mine != theirs]
    if got.c_dim or got.mbstd_num_channels != want.mbstd_num_channels:
        wrong.append(f"the file's D is conditional or has {got.mbstd_num_channels} minibatch-stddev channels")
    if wrong:
        raise LoadError(f"{key}: does not fit the configured discriminator: " + "; ".join(wrong) +
                        " (D judges images at model.loss_size; set the keys to the file's values)")
    ours = Discriminator(replace(got, mbstd_group_size=cfg.d_mbstd_group_size))  # the configured stddev group
    ours.load_state_dict(D.state_dict())
    return ours


# ---- the method ------------------------------------------------------------------------------------------------
class PSP(TranslationModule):
    config_class = PSPConfig
    grid_caption = "input | output | target"
    init_only_keys = ("encoder_weights", "discriminator_weights")  # weights the checkpoint replaces

    def __init__(self, model: PSPConfig, input_nc: int = 3, output_nc: int = 3, direction: str = "AtoB"):
        """input_nc: image channels, or the number of classes of one-hot label maps (data.label_nc)."""
        super().__init__(model, input_nc, output_nc, direction)
        cfg = self.cfg
        check_config(cfg)
        if output_nc != 3:
            raise ConfigError(f"data.output_nc: pSp translates into an RGB StyleGAN2, expected 3, got {output_nc}",
                              key="data.output_nc")
        decoder = _naming_the_key("model.prior", load_prior, cfg.prior)
        if decoder.img_channels != 3:
            raise ConfigError(f"model.prior: expected an RGB generator, {cfg.prior} makes {decoder.img_channels} "
                              f"channels", key="model.prior")
        encoder_nc = input_nc + (decoder.img_channels if cfg.restyle_iters else 0)  # ReStyle: + the reconstruction
        encoder = build_encoder(cfg.encoder_type, num_layers=cfg.num_layers, mode=cfg.mode, input_nc=encoder_nc,
                                output_size=decoder.img_resolution, input_size=cfg.input_size,
                                channels=list(cfg.channels), w_dim=decoder.w_dim,
                                **_n_styles_for_decoder(decoder))
        if cfg.encoder_weights:
            self._init_encoder(encoder, cfg.encoder_weights)
        self.net = PSPNet(encoder, decoder, self._average_latent(decoder), cfg.start_from_latent_avg,
                          resize=cfg.loss_size, noise_mode="random", restyle_iters=cfg.restyle_iters,
                          feature_res=self._feature_res(cfg, decoder))
        self.net.decoder.requires_grad_(cfg.train_decoder)
        self.net.decoder.eval()
        # domain-guided training: a discriminator trained alongside (in checkpoints, never exported)
        self.net_d = build_discriminator(cfg, decoder.img_channels) if cfg.adv_lambda > 0 else None
        # e4e: the latent-code discriminator (in checkpoints, never exported) and its pools of past codes
        self.net_w_d = LatentCodesDiscriminator(decoder.w_dim) if cfg.w_discriminator_lambda > 0 else None
        self.w_pools = {k: LatentCodesPool(cfg.w_pool_size) for k in ("real", "fake")} if cfg.use_w_pool else None
        self.n_steps = 0  # training steps taken (decides the lazy R1 steps); kept in checkpoints
        # loss networks: frozen, outside the module tree (not in checkpoints, not in DDP), built from their weight
        # files when training needs them (validate, export and invert do not: a checkpoint is usable without them)
        self._loss_nets: Optional[Dict[str, nn.Module]] = None

    @staticmethod
    def _init_encoder(encoder: nn.Module, path: str) -> None:
        """model.encoder_weights: ArcFace IR-SE50 weights start the backbone (pSp's initialisation), or a published
        pSp checkpoint's `encoder.*` starts the whole encoder, strictly (fine-tuning a pSp model, as the reference's
        --checkpoint_path; its decoder is the prior only if model.prior names the same file)."""
        from translate.deploy.checkpoints import load_checkpoint

        source = f"model.encoder_weights ({path})"
        if not Path(path).is_file():
            raise FileNotFoundError(f"model.encoder_weights: weight file not found: {path} (pSp's model_ir_se50.pth, "
                                    "or a pSp checkpoint to fine-tune)")
        sd = _naming_the_key("model.encoder_weights", load_checkpoint, path)
        if not isinstance(sd, dict):
            raise LoadError(f"{source}: expected an ArcFace IR-SE50 state dict or a pSp checkpoint")
        state = sd.get("state_dict")
        if isinstance(state, dict) and any(k.startswith("encoder.") for k in state):
            own = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
            strict_load(encoder, own, f"{source} encoder.* (the configured model.encoder_type, num_layers, mode, "
                                      "channels and input channels must be the checkpoint's)")
            return
        load_backbone_weights(encoder, sd, source)

    @staticmethod
    def _feature_res(cfg: PSPConfig, decoder: Generator) -> int:
        if cfg.feature_res and not hasattr(decoder.synthesis, "block_resolutions"):
            raise ConfigError(f"model.feature_res: needs a StyleGAN2 prior (resolution blocks); {cfg.prior} is a "
                              "StyleGAN3 generator: set feature_res to 0", key="model.feature_res")
        if cfg.feature_res and cfg.feature_res not in decoder.synthesis.block_resolutions:
            raise ConfigError(f"model.feature_res: expected one of the prior's block resolutions "
                              f"{decoder.synthesis.block_resolutions} (model.prior {cfg.prior}) or 0, got "
                              f"{cfg.feature_res}", key="model.feature_res")
        return cfg.feature_res

    @staticmethod
    def _average_latent(decoder: Generator) -> torch.Tensor:
        w_avg = getattr(decoder.mapping, "w_avg", None)
        if w_avg is not None and bool(w_avg.abs().sum() > 0):
            return w_avg.detach().clone()
        # a prior without a tracked average: estimate it as pSp does (mean of mapped random z)
        with torch.no_grad():
            z = torch.randn(10_000, decoder.z_dim, generator=torch.Generator().manual_seed(0))
            return decoder.mapping(z, skip_w_avg_update=True)[:, 0].mean(0)

    # ---- modes: the prior and the loss nets never train ------------------------------------------------------
    @property
    def frozen_modules(self) -> Tuple[str, ...]:
        """The prior, kept in eval mode (see FrozenParts) unless model.train_decoder trains it."""
        return () if self.cfg.train_decoder else ("net.decoder",)

    @property
    def loss_nets(self) -> Dict[str, nn.Module]:
        """The frozen networks of the losses (LPIPS, ArcFace, MoCo), built on first use; a missing weight file is
        an error naming its config key."""
        if self._loss_nets is None:
            self._loss_nets = build_loss_nets(self.cfg)
        return self._loss_nets

    def on_fit_start(self) -> None:  # before the first step: missing loss weights fail here, not mid-run
        for net in self.loss_nets.values():
            net.to(self.device)

    # ---- training ---------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        c = self.cfg
        # everything of the net but the prior (the encoder, and a feature head if any); the prior on request below
        params = [{"params": [p for name, p in self.net.named_parameters() if not name.startswith("decoder.")]}]
        if c.train_decoder:
            params += psp_decoder_groups(self.net.decoder)
        opt = build_optimizer(c.optim_name, params, c.learning_rate)
        if self.net_w_d is not None:
            return [opt, torch.optim.Adam(self.net_w_d.parameters(), lr=c.w_discriminator_lr)]
        if self.net_d is None:
            return opt
        return [opt, torch.optim.Adam(self.net_d.parameters(), lr=c.d_learning_rate, betas=tuple(c.d_betas))]

    def _check_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        c = self.cfg
        want_y = (3, c.loss_size, c.loss_size)
        if y.dim() != 4 or tuple(y.shape[1:]) != want_y:
            raise ValueError(f"pSp target: expected (N, {', '.join(map(str, want_y))}) (model.loss_size), got "
                             f"{tuple(y.shape)}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"pSp: {x.shape[0]} inputs but {y.shape[0]} targets in the batch")

    def losses(self, x: torch.Tensor, y: torch.Tensor, y_hat: torch.Tensor,
               codes: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Weighted loss terms (key "loss" is their sum); y_hat already at the loss resolution."""
        c, nets = self.cfg, self.loss_nets
        terms: Dict[str, torch.Tensor] = {}
        if c.l2_lambda > 0:
            terms["l2"] = F.mse_loss(y_hat, y) * c.l2_lambda
        if c.lpips_lambda > 0:
            terms["lpips"] = nets["lpips"](y_hat, y).mean() * c.lpips_lambda
        if c.id_lambda > 0:
            terms["id"] = nets["id"](y_hat, y) * c.id_lambda
        if c.l2_lambda_crop > 0 or c.lpips_lambda_crop > 0:
            t, b, l, r = face_crop(y.shape[-1])
            if c.l2_lambda_crop > 0:
                terms["l2_crop"] = F.mse_loss(y_hat[:, :, t:b, l:r], y[:, :, t:b, l:r]) * c.l2_lambda_crop
            if c.lpips_lambda_crop > 0:
                terms["lpips_crop"] = nets["lpips"](y_hat[:, :, t:b, l:r], y[:, :, t:b, l:r]).mean() * \
                    c.lpips_lambda_crop
        if c.w_norm_lambda > 0:
            offset = codes - self.net.latent_avg if c.start_from_latent_avg else codes
            terms["w_norm"] = offset.flatten(1).norm(dim=1).mean() * c.w_norm_lambda
        if c.moco_lambda > 0:
            terms["moco"] = nets["moco"](y_hat, y) * c.moco_lambda
        if c.adv_lambda > 0:
            terms["adv"] = g_nonsaturating(self.net_d(self.d_batch(y_hat))) * c.adv_lambda
        if c.progressive_start is not None and c.delta_norm_lambda > 0:
            terms["delta"] = delta_loss(codes, self.stage, c.delta_norm) * c.delta_norm_lambda
        if c.w_discriminator_lambda > 0:  # mean over the rows in training of the non-saturating loss
            rows = codes[:, :self.stage + 1] if c.progressive_start is not None else codes
            terms["w_adv"] = g_nonsaturating(self.net_w_d(rows.reshape(-1, rows.shape[-1]))) * \
                c.w_discriminator_lambda
        terms["loss"] = torch.stack(list(terms.values())).sum()
        return terms

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        opts = self.optimizers()
        opt, opt_d = (opts[0], opts[1]) if isinstance(opts, (list, tuple)) else (opts, None)
        x, y = batch["A"], batch["B"]
        self._check_batch(x, y)
        self.set_stage()
        terms_w = {}
        if self.net_w_d is not None:  # e4e: the latent discriminator steps first, on the encoder as it is
            with self.toggled_optimizer(opt_d):
                terms_w = self._latent_discriminator_step(opt_d, x)
        with self.toggled_optimizer(opt):
            opt.zero_grad(set_to_none=True)
            if self.cfg.restyle_iters:
                terms, y_hat = self._restyle_backward(x, y)
            else:
                codes, feature = self.net.encode_full(x)
                y_hat = self.net.decode(codes, noise_mode=self.cfg.train_noise, feature=feature)
                terms = self.losses(x, y, y_hat, codes)
                self.manual_backward(terms["loss"])
            opt.step()
        if self.net_d is not None:
            with self.toggled_optimizer(opt_d):
                terms.update(self._discriminator_step(opt_d, y, y_hat.detach()))
        terms.update(terms_w)
        self.n_steps += 1
        self.set_stage()  # the next step's (what validation in between and a checkpoint's resume see)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, on_step=True, on_epoch=False,
                      batch_size=x.shape[0], prog_bar=False)
        self.maybe_log_train_images([x, y_hat, y])

    def _restyle_backward(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """ReStyle's training iterations: from the average latent and its image, each step predicts a residual
        from [x, current reconstruction], takes the losses and backpropagates them (gradients add up over the
        steps; the next step's inputs are detached). Returns the last step's terms and output."""
        net = self.net
        codes = net.latent_avg.unsqueeze(0).expand(x.shape[0], -1, -1)
        with torch.no_grad():
            rec = net.decode(codes, noise_mode="const")  # the average image
        for _ in range(self.cfg.restyle_iters):
            codes = net.restyle_step(x, codes, rec)
            y_hat = net.decode(codes, noise_mode=self.cfg.train_noise)
            terms = self.losses(x, y, y_hat, codes)
            self.manual_backward(terms["loss"])
            codes, rec = codes.detach(), y_hat.detach()
        return terms, y_hat

    def d_batch(self, images: torch.Tensor) -> torch.Tensor:
        """The images D judges: whole minibatch-stddev groups."""
        return whole_groups(images, self.cfg.d_mbstd_group_size)

    def _discriminator_step(self, opt_d, real: torch.Tensor, fake: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Logistic loss on targets (real) vs outputs (fake), then R1 on the targets every d_reg_interval steps."""
        c = self.cfg
        r1 = c.r1_gamma > 0 and self.n_steps % c.d_reg_interval == 0
        real, fake = self.d_batch(real).detach().requires_grad_(r1), self.d_batch(fake)
        real_logits, fake_logits = self.net_d(real), self.net_d(fake)
        terms = {"D": d_logistic(real_logits, fake_logits), "D_real": real_logits.detach().mean(),
                 "D_fake": fake_logits.detach().mean()}
        loss = terms["D"]
        if r1:  # the same forward pass of the targets gives the gradient penalty
            terms["D_r1"] = r1_penalty(real_logits, real, c.r1_gamma)
            loss = loss + terms["D_r1"] * c.d_reg_interval
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt_d.step()
        return {k: v.detach() for k, v in terms.items()}

    # ---- e4e ------------------------------------------------------------------------------------------------------
    @property
    def stage(self) -> int:
        """e4e's progressive stage at the current step (every delta when not progressive)."""
        c = self.cfg
        return progressive_stage(self.n_steps, c.progressive_start, c.progressive_step_every, self.net.n_styles)

    def set_stage(self) -> None:
        """Give an e4e encoder the deltas of the current step (a no-op for the other encoders)."""
        if hasattr(self.net.encoder, "progressive_stage"):
            self.net.encoder.progressive_stage = self.stage

    def real_and_fake_codes(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """What the latent discriminator judges, (N, w_dim) each: the mapping network's w of random z (real) and
        row 0 of the encoder's codes (fake; with the pool, a random row of those in training), without gradients."""
        with torch.no_grad():
            decoder = self.net.decoder
            z = torch.randn(x.shape[0], decoder.z_dim, device=x.device)
            real_w = decoder.mapping(z, skip_w_avg_update=True)[:, 0]
            fake_w = self.net.encode(x)
            if self.cfg.progressive_start is not None:
                fake_w = fake_w[:, :self.stage + 1]
            if self.w_pools is not None:
                real_w, fake_w = self.w_pools["real"].query(real_w), self.w_pools["fake"].query(fake_w)
            return real_w, fake_w[:, 0] if fake_w.dim() == 3 else fake_w

    def _latent_discriminator_step(self, opt_d, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Softplus loss on real vs fake codes, then R1 on the real ones every d_reg_interval steps (as e4e)."""
        c, D = self.cfg, self.net_w_d
        real_w, fake_w = self.real_and_fake_codes(x)
        real_logits, fake_logits = D(real_w), D(fake_w)
        terms = {"D_w": d_logistic(real_logits, fake_logits), "D_w_real": real_logits.detach().mean(),
                 "D_w_fake": fake_logits.detach().mean()}
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(terms["D_w"])
        opt_d.step()
        if c.r1_gamma > 0 and self.n_steps % c.d_reg_interval == 0:
            real_w = real_w.detach().requires_grad_(True)
            terms["D_w_r1"] = r1_penalty(D(real_w), real_w, c.r1_gamma)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(terms["D_w_r1"] * c.d_reg_interval)
            # a second Adam step, as e4e takes it; through the wrapped optimizer, so that Lightning's step count
            # (trainer.max_steps) stays two per batch whether or not R1 runs
            getattr(opt_d, "optimizer", opt_d).step()
        return {k: v.detach() for k, v in terms.items()}

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["psp_progress"] = {"n_steps": self.n_steps}

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        self.n_steps = int(checkpoint.get("psp_progress", {}).get("n_steps", 0))
        self.set_stage()  # e4e: the stage of the step reached

    def on_train_epoch_end(self) -> None:  # pSp trains by steps at a constant learning rate: no schedule
        pass

    # ---- evaluation and export ---------------------------------------------------------------------------------
    def _eval_step(self, batch: Dict[str, Any], batch_idx: int, prefix: str) -> None:
        """PSNR/SSIM/L1 with constant noise (base class), and while fitting also the training loss terms as pSp
        validates (with the training noise): `val/loss`, `val/l2`, ... so `checkpoint.monitor: val/loss` (mode
        min) keeps pSp's best model."""
        super()._eval_step(batch, batch_idx, prefix)
        if prefix != "val" or self._trainer is None or self.trainer.state.fn != TrainerFn.FITTING:
            return  # `validate`/`test` of a finished run need no loss-network weight files
        x, y = batch["A"], batch["B"]
        codes, feature = self.net.encode_full(x)
        terms = self.losses(x, y, self.net.decode(codes, noise_mode=self.cfg.train_noise, feature=feature), codes)
        self.log_dict({f"val/{k}": v for k, v in terms.items()}, on_step=False, on_epoch=True,
                      batch_size=x.shape[0], sync_dist=True)

    def inference_net(self) -> nn.Module:
        """Deterministic (constant noise) and pooled to the loss resolution, to score against the targets."""
        import copy

        net = copy.deepcopy(self.net).eval()
        net.noise_mode, net.resize = "const", self.cfg.loss_size
        return net

    def export_spec(self) -> Tuple[nn.Module, Dict[str, Any]]:
        """The deterministic net at the prior's full resolution, and the bundle metadata."""
        import copy

        net = copy.deepcopy(self.net).eval().requires_grad_(False)
        net.noise_mode, net.resize, net.fused_modconv = "const", None, False  # any batch size in the graphs
        if hasattr(net.encoder, "progressive_stage"):  # e4e: a bundle adds every delta, as a loaded e4e model
            net.encoder.progressive_stage = net.n_styles - 1
        meta = {
            "method": "psp",
            "input_nc": int(self.hparams.input_nc),  # the images' channels (a ReStyle encoder takes 3 more)
            "output_nc": 3,
            "value_range": [-1.0, 1.0],
            "size_multiple": int(self.cfg.input_size),
            "input_size": int(self.cfg.input_size),  # fixed: the encoder's heads are sized for it
            "direction": self.hparams.direction,
            "generator": None,
            "psp": net.spec(),
            "latent_mask": list(self.cfg.latent_mask),
            "mix_alpha": self.cfg.mix_alpha,
            "model_config": asdict(self.cfg),
        }
        return net, meta
