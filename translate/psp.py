"""pSp (Richardson et al. 2021): an encoder into the W+ space of a frozen, pretrained StyleGAN2 generator.

image -> encoder -> W+ offsets (+ the prior's average latent) -> frozen StyleGAN2 -> image, average-pooled to the loss
resolution. Losses (weights in the config, the paper's per task in configs/psp/): L2, LPIPS, identity (ArcFace
IR-SE50 cosine on the inner face crop pooled to 112 px), W-norm (the non-squared distance of the codes to the
average latent), the inner-crop L2/LPIPS of frontalization, and a MoCo-feature similarity for non-face domains.

The prior and every loss network stay frozen and in eval mode whatever Lightning toggles. Loss networks are not
part of the module's state dict (checkpoints hold `net.encoder.*`, `net.decoder.*`, `net.latent_avg`), so a
checkpoint does not carry 100+ MB of ArcFace weights. Their weight files come from the config; a missing file is
an error that names the key. The value `random` builds a randomly initialised network instead: the loss is then
meaningless, which is only useful for smoke tests.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from nets.encoders import ENCODERS, PAPER_CHANNELS, build_encoder, load_arcface, load_backbone_weights
from nets.psp import PSPNet
from priors.loaders import load_prior
from priors.stylegan2 import Generator
from translate.base import TranslationModule
from translate.optim import build_optimizer

RANDOM = "random"  # weight-file value that builds a randomly initialised loss network (smoke tests only)
FACE_CROP_256 = (35, 223, 32, 220)  # pSp's inner-face crop (top, bottom, left, right) of a 256-px face
ID_SIZE = 112  # ArcFace's input side
MOCO_SIZE = 224
TEST_ARCFACE_CHANNELS = (8, 8, 16, 16)  # width of the random ArcFace built for `id_weights: random`


@dataclass
class PSPConfig:
    """pSp options; names follow the reference's train options where it has one."""

    prior: Optional[str] = None  # the frozen StyleGAN2: a prior folder, NVIDIA .pkl/.pt, rosinality .pt (required)
    encoder_type: str = "GradualStyleEncoder"  # GradualStyleEncoder | BackboneEncoderUsingLastLayerIntoW(Plus)
    num_layers: int = 50  # IR-SE depth: 50 | 100 | 152
    mode: str = "ir_se"  # ir | ir_se
    channels: List[int] = field(default_factory=lambda: list(PAPER_CHANNELS))  # stage widths (small for tests)
    input_size: int = 256  # encoder input side; inputs of another size are an error (resize in the data config)
    encoder_weights: Optional[str] = None  # ArcFace IR-SE50 file to initialise the encoder's backbone (pSp does)
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
    restyle_iters: int = 0  # ReStyle: > 0 trains an encoder of [input, reconstruction] for this many residual steps
    #                         per batch from the average latent's image (the ReStyle paper: 5); 0 = plain pSp


# ---- loss networks -------------------------------------------------------------------------------------------
def face_crop(size: int) -> Tuple[int, int, int, int]:
    """pSp's inner-face crop box scaled from 256 px to `size`."""
    return tuple(int(round(v * size / 256)) for v in FACE_CROP_256)  # type: ignore[return-value]


class IDLoss(nn.Module):
    """1 - cos(ArcFace(crop(y_hat)), ArcFace(crop(y))), averaged over the batch; crops pooled to 112 px."""

    def __init__(self, arcface: nn.Module):
        super().__init__()
        self.arcface = arcface.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "IDLoss":
        return super().train(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        t, b, l, r = face_crop(x.shape[-1])
        return self.arcface(F.adaptive_avg_pool2d(x[:, :, t:b, l:r], (ID_SIZE, ID_SIZE)))

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(y)
        return (1 - (self.features(y_hat) * target).sum(dim=1)).mean()


class MocoLoss(nn.Module):
    """1 - cos of MoCo v2 ResNet-50 features (after global pooling) of y_hat and y, for non-face domains."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "MocoLoss":
        return super().train(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(MOCO_SIZE, MOCO_SIZE), mode="bilinear", align_corners=False)
        x = ((x + 1) / 2 - self.mean) / self.std
        return F.normalize(self.backbone(x).flatten(1), dim=1)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(y)
        return (1 - (self.features(y_hat) * target).sum(dim=1)).mean()


def load_moco(path: Optional[str], key: str = "model.moco_weights") -> nn.Module:
    """ResNet-50 without its classifier, from a MoCo v2 checkpoint (`module.encoder_q.*`, fc dropped), strictly."""
    import torchvision

    from nets.strict import strict_load
    from translate.checkpoints import load_checkpoint

    net = torchvision.models.resnet50(weights=None)
    net.fc = nn.Identity()
    if path == RANDOM:
        return net
    if not path:
        raise FileNotFoundError(f"{key} is not set: the MoCo loss needs a MoCo v2 ResNet-50 checkpoint "
                                "(moco_v2_800ep_pretrain.pt); set it or give moco_lambda 0")
    state = load_checkpoint(path)
    sd = state.get("state_dict", state) if isinstance(state, dict) else state
    prefix = "module.encoder_q."
    own = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and not k.startswith(prefix + "fc.")}
    if not own:
        raise ValueError(f"{key} ({path}): no '{prefix}*' keys; expected a MoCo v2 checkpoint")
    return strict_load(net, own, f"{key} ({path})")


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
        raise ValueError("model.prior must be set: the pretrained StyleGAN2 to translate through (a prior folder "
                         "written by `cli.py convert-prior`/`export`, an NVIDIA .pkl/.pt or a rosinality .pt)")
    if cfg.encoder_type not in ENCODERS:
        raise ValueError(f"model.encoder_type: expected one of {sorted(ENCODERS)}, got {cfg.encoder_type!r}")
    if cfg.id_lambda > 0 and cfg.moco_lambda > 0:
        raise ValueError("model.id_lambda and model.moco_lambda are both > 0: choose the identity loss (faces) or "
                         "the MoCo loss (other domains)")
    if cfg.restyle_iters < 0:
        raise ValueError(f"model.restyle_iters must be >= 0 (0 = plain pSp), got {cfg.restyle_iters}")
    for key in ("l2_lambda", "lpips_lambda", "id_lambda", "w_norm_lambda", "l2_lambda_crop", "lpips_lambda_crop",
                "moco_lambda"):
        if getattr(cfg, key) < 0:
            raise ValueError(f"model.{key} must be >= 0, got {getattr(cfg, key)}")


# ---- the method ------------------------------------------------------------------------------------------------
class PSP(TranslationModule):
    config_class = PSPConfig
    grid_caption = "input | output | target"

    def __init__(self, model: Dict[str, Any], input_nc: int = 3, output_nc: int = 3, direction: str = "AtoB"):
        """input_nc: image channels, or the number of classes of one-hot label maps (data.label_nc)."""
        super().__init__()
        self.save_hyperparameters()
        self.cfg = cfg = PSPConfig(**model)
        check_config(cfg)
        if output_nc != 3:
            raise ValueError(f"data.output_nc: pSp translates into an RGB StyleGAN2, expected 3, got {output_nc}")
        decoder = load_prior(cfg.prior)
        if decoder.img_channels != 3:
            raise ValueError(f"model.prior: expected an RGB generator, {cfg.prior} makes {decoder.img_channels} "
                             f"channels")
        encoder_nc = input_nc + (decoder.img_channels if cfg.restyle_iters else 0)  # ReStyle: + the reconstruction
        encoder = build_encoder(cfg.encoder_type, num_layers=cfg.num_layers, mode=cfg.mode, input_nc=encoder_nc,
                                output_size=decoder.img_resolution, input_size=cfg.input_size,
                                channels=list(cfg.channels), w_dim=decoder.w_dim)
        if cfg.encoder_weights:
            self._init_encoder(encoder, cfg.encoder_weights)
        self.net = PSPNet(encoder, decoder, self._average_latent(decoder), cfg.start_from_latent_avg,
                          resize=cfg.loss_size, noise_mode="random", restyle_iters=cfg.restyle_iters)
        self.net.decoder.requires_grad_(cfg.train_decoder)
        self.net.decoder.eval()
        # loss networks: frozen, outside the module tree (not in checkpoints, not in DDP), moved in on_fit_start
        self._loss_nets = build_loss_nets(cfg)

    @staticmethod
    def _init_encoder(encoder: nn.Module, path: str) -> None:
        from translate.checkpoints import load_checkpoint

        sd = load_checkpoint(path) if path else None
        if not isinstance(sd, dict):
            raise ValueError(f"model.encoder_weights ({path}): expected an ArcFace IR-SE50 state dict")
        load_backbone_weights(encoder, sd, f"model.encoder_weights ({path})")

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
    def train(self, mode: bool = True) -> "PSP":
        super().train(mode)
        if not self.cfg.train_decoder:
            self.net.decoder.eval()
        return self

    def on_fit_start(self) -> None:
        for net in self._loss_nets.values():
            net.to(self.device)

    def on_validation_start(self) -> None:
        self.on_fit_start()

    # ---- training ---------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        params = list(self.net.encoder.parameters())
        if self.cfg.train_decoder:
            params += list(self.net.decoder.parameters())
        return build_optimizer(self.cfg.optim_name, params, self.cfg.learning_rate)

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
        c, nets = self.cfg, self._loss_nets
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
        terms["loss"] = torch.stack(list(terms.values())).sum()
        return terms

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        opt = self.optimizers()
        x, y = batch["A"], batch["B"]
        self._check_batch(x, y)
        opt.zero_grad(set_to_none=True)
        if self.cfg.restyle_iters:
            terms, y_hat = self._restyle_backward(x, y)
        else:
            codes = self.net.encode(x)
            y_hat = self.net.decode(codes, noise_mode="random")
            terms = self.losses(x, y, y_hat, codes)
            self.manual_backward(terms["loss"])
        opt.step()
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
            y_hat = net.decode(codes, noise_mode="random")
            terms = self.losses(x, y, y_hat, codes)
            self.manual_backward(terms["loss"])
            codes, rec = codes.detach(), y_hat.detach()
        return terms, y_hat

    def on_train_epoch_end(self) -> None:  # pSp trains by steps at a constant learning rate: no schedule
        pass

    # ---- evaluation and export ---------------------------------------------------------------------------------
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
        net.noise_mode, net.resize = "const", None
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
