"""Outputs of the pSp reference code on seeded weights: the target of tests/translate/methods/test_psp_reference.py.

    python scripts/psp_reference_outputs.py --ref /path/to/pixel2style2pixel [--out reference_outputs.pt]

Runs the reference implementation (eladrich/pixel2style2pixel, a checkout the user provides; nothing of it is
copied here) on the CPU with every weight set by `seeded_weights` below, so that the test can rebuild the same
weights from the published key layout (tests/data/psp/psp_1024_layout.tsv) without the reference code and compare:
- the pSp model at output size 1024 (GradualStyleEncoder on IR-SE50 + the rosinality decoder): W+ codes and the
  output pooled to 256 px (`face_pool`), constant noise (`randomize_noise=False`), and the same with style mixing
  (`latent_mask` 8-17 blended with alpha 0.5 towards the W code of a seeded z, as the reference's style_mixing.py);
- the single-head W and W+ encoders (`BackboneEncoderUsingLastLayerIntoW`, `...IntoWPlus`);
- the loss networks, each built by the reference's own loading code from seeded weight files: the identity loss
  (`criteria/id_loss.py`, ArcFace IR-SE50) on the pSp output against a second image, the MoCo loss
  (`criteria/moco_loss.py`) and LPIPS (`criteria/lpips`, AlexNet v0.1), and the training loss of
  `training/coach.py` (calc_loss) with the paper's frontalization weights, every term on;
- the weights after 40 steps of its Ranger optimizer (`training/ranger.py`) on a small seeded problem;
- the super-resolution inputs of `datasets/augmentations.py` (BicubicDownSample by each factor, then ToPILImage)
  of a seeded 128-px image.
The reference's decoder imports rosinality's compiled ops at import time; they are replaced by a stand-in module on
our `priors.ops` with impl="ref" (upfirdn2d and bias_act, both checked against NVIDIA's reference ops by
tests/priors/test_ops.py). The stored file is small: the seeded inputs and the outputs, no weights.
"""
from __future__ import annotations

import argparse
import math
import subprocess
import sys
import types
import zlib
from pathlib import Path
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "data" / "psp" / "reference_outputs.pt"
OUTPUT_SIZE = 1024  # the published models' resolution (psp_ffhq_encode.pt and the others)
N_STYLES = 18
W_DIM = 512
LATENT_MASK = tuple(range(8, N_STYLES))  # the reference's multi-modal default: the fine layers
MIX_ALPHA = 0.5
MIX_SEED = 7  # z of the injected style: torch.randn(1, 512) from this seed (PSPNet.variants draws it so)
INPUT_SEED, TARGET_SEED = 0, 1
SR_FACTORS = (1, 2, 4, 8, 16, 32)  # pSp's super-resolution factors
# the paper's frontalization weights (its README's command; configs/psp/frontalization.yaml): every pSp loss term
FRONTALIZATION_LAMBDAS = {"l2_lambda": 0.001, "lpips_lambda": 0.08, "l2_lambda_crop": 0.01, "lpips_lambda_crop": 0.8,
                          "id_lambda": 1.0, "w_norm_lambda": 0.005, "moco_lambda": 0.0}
RANGER_STEPS, RANGER_LR, RANGER_SEED = 40, 1e-2, 1  # Lookahead every 6 steps, RAdam rectified from step 6
CROP = (slice(112, 144), slice(112, 144))  # a full-resolution window of the 256-px output that the test compares
POOL = 4  # the rest of the 256-px output is compared average-pooled by this factor (64 x 64)


# ---- seeded weights (the test rebuilds them from the key layout alone) -----------------------------------------
def _normal(key: str, shape: Sequence[int]) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    return torch.randn(tuple(shape), generator=g)


def seeded_tensor(key: str, shape: Sequence[int], keys: Sequence[str] | set) -> torch.Tensor:
    """A deterministic value for state-dict entry `key`, scaled so that the deep nets stay finite and non-trivial:
    conv/linear weights ~ N(0, 1 / fan_in) (equalized layers, whose scale is applied at run time, ~ N(0, 1)),
    BatchNorm affine ~ 1 +- 0.1 with positive running variances, PReLU slopes ~ 0.25, biases ~ 0.1."""
    r = _normal(key, shape)
    name = key.rsplit(".", 1)[-1]
    stem = key[: -len(name)]
    is_bn = f"{stem}running_mean" in keys
    if name == "running_var":
        return 0.5 + 0.5 * r.abs()
    if name == "running_mean":
        return 0.1 * r
    if key.startswith("decoder."):  # rosinality: every layer equalized (scale at run time)
        if key.startswith("decoder.style.") and name == "weight":
            return r / 0.01  # the mapping network's lr_mul 0.01 is applied at run time
        return 0.1 * r if name == "bias" else r
    if key.endswith("linear.weight") and "output_layer" not in key:  # map2style / W / W+ heads: EqualLinear
        return r
    if len(shape) >= 2:
        return r / math.sqrt(math.prod(shape[1:]))
    if name == "weight":
        return 1 + 0.1 * r if is_bn else 0.25 + 0.05 * r  # BatchNorm gamma, else a PReLU slope
    return 0.1 * r  # biases


def seeded_weights(layout: Mapping[str, Tuple[Sequence[int], torch.dtype]]) -> Dict[str, torch.Tensor]:
    """key -> (shape, dtype) -> seeded tensors; rosinality's resampling kernels (`*kernel`) and BatchNorm's
    num_batches_tracked are structural, not weights: every kernel of a pSp decoder is an upsampling one, the
    [1, 3, 3, 1] filter times 4 (factor squared), and the counter is 0."""
    keys = set(layout)
    out: Dict[str, torch.Tensor] = {}
    for key, (shape, dtype) in layout.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros(tuple(shape), dtype=dtype)
        elif key.endswith("kernel"):
            k = torch.tensor([1.0, 3.0, 3.0, 1.0])
            k = k[None, :] * k[:, None]
            out[key] = k / k.sum() * 4
        else:
            out[key] = seeded_tensor(key, shape, keys).to(dtype)
    return out


def latent_avg() -> torch.Tensor:
    """(n_styles, w_dim): one w repeated per style vector, as pSp stores the prior's average latent."""
    return (0.5 * _normal("latent_avg", (1, W_DIM))).repeat(N_STYLES, 1)


def _layout(module: nn.Module, prefix: str = "") -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    return {prefix + k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}


def arcface_file() -> Dict[str, torch.Tensor]:
    """model_ir_se50.pth with seeded weights (the layout of our ArcFace, which is the published file's)."""
    from nets.encoders import ArcFace

    with torch.device("meta"):  # shapes only
        layout = _layout(ArcFace())
    return seeded_weights(layout)


def lpips_files() -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """LPIPS (AlexNet, v0.1) with seeded weights: torchvision's alexnet state dict (`features.*`; LPIPS uses no
    classifier) and the official head file (`lin{l}.model.1.weight`, non-negative as trained)."""
    import torchvision

    with torch.device("meta"):
        features = _layout(torchvision.models.alexnet(weights=None).features, "features.")
    heads = {f"lin{i}.model.1.weight": ((1, c, 1, 1), torch.float32) for i, c in enumerate((64, 192, 384, 256, 256))}
    return seeded_weights(features), {k: v.abs() for k, v in seeded_weights(heads).items()}


def moco_file() -> Dict[str, object]:
    """moco_v2_800ep_pretrain.pth.tar with seeded weights: `state_dict` of `module.encoder_q.*`, a ResNet-50 with
    MoCo v2's MLP head (fc.0: 2048 -> 2048, fc.2: 2048 -> 128), which the loss drops."""
    import torchvision

    with torch.device("meta"):
        net = torchvision.models.resnet50(weights=None)
    layout = {k: v for k, v in _layout(net, "module.encoder_q.").items() if ".fc." not in k}
    layout.update({"module.encoder_q.fc.0.weight": ((2048, 2048), torch.float32),
                   "module.encoder_q.fc.0.bias": ((2048,), torch.float32),
                   "module.encoder_q.fc.2.weight": ((128, 2048), torch.float32),
                   "module.encoder_q.fc.2.bias": ((128,), torch.float32)})
    return {"epoch": 800, "arch": "resnet50", "state_dict": seeded_weights(layout)}


def ranger_problem() -> Tuple[nn.Module, list]:
    """A small conv + linear regression with seeded weights and RANGER_STEPS seeded batches, to train with Ranger
    at lr RANGER_LR: past RAdam's rectification switch and several Lookahead synchronisations."""
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    net.load_state_dict(seeded_weights(_layout(net, "")))
    g = torch.Generator().manual_seed(RANGER_SEED)
    return net, [(torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 4, generator=g)) for _ in range(RANGER_STEPS)]


def train_ranger(optimizer_class: type) -> Dict[str, torch.Tensor]:
    """The weights of `ranger_problem` after its steps with optimizer_class(params, lr=RANGER_LR) (defaults else)."""
    net, batches = ranger_problem()
    opt = optimizer_class(net.parameters(), lr=RANGER_LR)
    for x, target in batches:
        opt.zero_grad()
        F.mse_loss(net(x), target).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def image(seed: int, size: int = 256) -> torch.Tensor:
    """A smooth seeded image (1, 3, size, size) in [-1, 1]: 32 x 32 noise upsampled bilinearly."""
    small = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)


def sr_source(size: int = 128) -> np.ndarray:
    """A smooth seeded uint8 image (size, size, 3) for pSp's super-resolution degradation."""
    return ((image(INPUT_SEED, size)[0].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy()


def mix_z() -> torch.Tensor:
    return torch.randn(1, W_DIM, generator=torch.Generator().manual_seed(MIX_SEED))


def summary(img: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The parts of a 256-px output that are stored and compared."""
    return {"pooled": F.avg_pool2d(img, POOL), "crop": img[(..., *CROP)].clone()}


# ---- the reference code --------------------------------------------------------------------------------------
def _install_op_stand_in() -> None:
    """`models.stylegan2.op` of the reference builds CUDA code at import; a stand-in with the same functions on our
    reference ops (rosinality's upfirdn2d pads (p0, p1) on both axes; fused_leaky_relu adds a bias on dim 1)."""
    sys.path.insert(0, str(ROOT))
    from priors.ops import bias_act, upfirdn2d as ops_upfirdn2d

    op = types.ModuleType("models.stylegan2.op")

    def fused_leaky_relu(x, bias, negative_slope=0.2, scale=2 ** 0.5):
        return bias_act(x, bias, dim=1, act="lrelu", alpha=negative_slope, gain=scale, impl="ref")

    class FusedLeakyReLU(nn.Module):
        def __init__(self, channel, negative_slope=0.2, scale=2 ** 0.5):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(channel))
            self.negative_slope, self.scale = negative_slope, scale

        def forward(self, x):
            return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)

    def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
        return ops_upfirdn2d(x, kernel, up=up, down=down, padding=[pad[0], pad[1], pad[0], pad[1]], impl="ref")

    op.fused_leaky_relu, op.FusedLeakyReLU, op.upfirdn2d = fused_leaky_relu, FusedLeakyReLU, upfirdn2d
    sys.modules["models.stylegan2.op"] = op
    # models/psp.py and training/coach.py import matplotlib (and coach.py cv2 and tensorboard) for logging only
    pyplot = types.SimpleNamespace()
    sys.modules.setdefault("matplotlib", types.SimpleNamespace(use=lambda *a, **k: None, pyplot=pyplot))
    sys.modules.setdefault("matplotlib.pyplot", pyplot)
    sys.modules.setdefault("cv2", types.SimpleNamespace())
    sys.modules.setdefault("torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=None))


def _seed_module(module: nn.Module, prefix: str = "") -> None:
    state = module.state_dict()
    layout = {prefix + k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    seeded = seeded_weights(layout)
    module.load_state_dict({k: seeded[prefix + k] for k in state}, strict=True)


def _coach_loss(id_loss: nn.Module, lpips: nn.Module, x: torch.Tensor, y: torch.Tensor, y_hat: torch.Tensor,
                codes: torch.Tensor) -> Dict[str, float]:
    """training/coach.py's calc_loss with the paper's frontalization weights (a Coach without its data, logger and
    networks: calc_loss reads only its options, loss modules and net.latent_avg)."""
    from criteria.w_norm import WNormLoss
    from training.coach import Coach

    coach = Coach.__new__(Coach)
    coach.opts = argparse.Namespace(start_from_latent_avg=True, **FRONTALIZATION_LAMBDAS)
    coach.net = types.SimpleNamespace(latent_avg=latent_avg())
    coach.id_loss, coach.lpips_loss, coach.w_norm_loss = id_loss, lpips, WNormLoss(start_from_latent_avg=True)
    _, loss_dict, _ = coach.calc_loss(x, y, y_hat, codes)
    return loss_dict


def _loss_networks(img: torch.Tensor, codes: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> Dict[str, object]:
    """The reference's IDLoss, MocoLoss and LPIPS, each built by its own code from seeded weight files (its paths
    pointed at them, its .cuda() / .to("cuda") calls kept on the CPU, its one download answered with the head
    file)."""
    import tempfile
    from unittest import mock

    import torchvision

    from configs import paths_config
    from criteria import moco_loss
    from criteria.id_loss import IDLoss
    from criteria.lpips import lpips as lpips_module, networks as lpips_networks

    out: Dict[str, object] = {}
    features, heads = lpips_files()
    no_download = types.SimpleNamespace(**{
        name: (lambda *a, _n=name, **k: getattr(torchvision.models, _n)(weights=None))
        for name in ("alexnet", "vgg16", "squeezenet1_1")})
    module_to = nn.Module.to

    def cpu_to(self, *args, **kwargs):  # LPIPS moves itself to "cuda"
        return self if args[:1] == ("cuda",) else module_to(self, *args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.object(nn.Module, "cuda", lambda self, *a, **k: self), \
            mock.patch.object(nn.Module, "to", cpu_to), \
            mock.patch.object(lpips_networks, "models", no_download), \
            mock.patch.object(torch.hub, "load_state_dict_from_url", lambda *a, **k: dict(heads)):
        ir_se50, moco = Path(tmp) / "model_ir_se50.pth", Path(tmp) / "moco_v2_800ep_pretrain.pth.tar"
        torch.save(arcface_file(), ir_se50)
        torch.save(moco_file(), moco)
        with mock.patch.dict(paths_config.model_paths, {"ir_se50": str(ir_se50), "moco": str(moco)}):
            id_loss, moco_sim = IDLoss().eval(), moco_loss.MocoLoss().eval()
        lpips = lpips_module.LPIPS(net_type="alex").eval()
        lpips.net.layers.load_state_dict({k[len("features."):]: v for k, v in features.items()})
        out["id_loss"] = id_loss(img, y, x)[0].clone()
        out["arcface"] = id_loss.extract_feats(y)
        pair_x, pair_y = torch.cat([x, y]), torch.cat([y, x])  # its squeeze() breaks a batch of one
        out["moco_loss"] = moco_sim(pair_x, pair_y, pair_x)[0].clone()
        out["moco_features"] = moco_sim.extract_feats(pair_x)
        out["lpips"] = lpips(x, y).clone()
        out["frontalization_loss"] = _coach_loss(id_loss, lpips, x, y, img.clamp(-1, 1), codes)
    return out


def reference_outputs(ref: Path) -> Dict[str, object]:
    _install_op_stand_in()
    sys.path.insert(0, str(ref))
    from models.encoders import psp_encoders
    from models.psp import pSp

    opts = argparse.Namespace(output_size=OUTPUT_SIZE, encoder_type="GradualStyleEncoder", input_nc=3, label_nc=0,
                              start_from_latent_avg=True, learn_in_w=False, device="cpu", checkpoint_path=None)
    pSp.load_weights = lambda self: None  # the reference would read its pretrained files here
    net = pSp(opts).eval()
    _seed_module(net)
    net.latent_avg = latent_avg()
    x, y = image(INPUT_SEED), image(TARGET_SEED)
    out: Dict[str, object] = {}
    with torch.no_grad():
        img, codes = net(x, resize=True, randomize_noise=False, return_latents=True)
        _, inject = net(mix_z(), input_code=True, return_latents=True)
        mixed = net(x, resize=True, randomize_noise=False, latent_mask=list(LATENT_MASK), inject_latent=inject,
                    alpha=MIX_ALPHA)
        out.update(codes=codes.clone(), image=summary(img), mixed=summary(mixed))

        encoders = {}
        for name in ("BackboneEncoderUsingLastLayerIntoW", "BackboneEncoderUsingLastLayerIntoWPlus"):
            enc = getattr(psp_encoders, name)(50, "ir_se", argparse.Namespace(input_nc=3, n_styles=N_STYLES)).eval()
            _seed_module(enc, "encoder.")
            encoders[name] = enc(x)
        out["encoders"] = encoders

        out.update(_loss_networks(img, codes, x, y))

    # the optimizer: training/ranger.py (RAdam + Lookahead + gradient centralisation) with pSp's defaults
    import warnings

    from training.ranger import Ranger

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecated add_(scalar, tensor) calls
        out["ranger"] = train_ranger(Ranger)

    # super-resolution inputs: datasets/augmentations.py's BilinearResize with each factor (the bicubic filter and
    # ToPILImage's 8-bit truncation), before its Resize back up
    from PIL import Image
    from torchvision import transforms

    from datasets.augmentations import BicubicDownSample

    src = transforms.ToTensor()(Image.fromarray(sr_source())).unsqueeze(0)
    out["sr_low_res"] = {f: torch.from_numpy(np.asarray(transforms.ToPILImage()(
        BicubicDownSample(factor=f, cuda=False)(src)[0].clamp(0, 1))).copy()) for f in SR_FACTORS}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", type=Path, required=True, help="a checkout of eladrich/pixel2style2pixel")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT.relative_to(ROOT)}")
    p.add_argument("--commit", help="the reference's commit, where --ref is not a git checkout (default: its HEAD)")
    a = p.parse_args(argv)
    if not (a.ref / "models" / "psp.py").is_file():
        p.error(f"--ref: {a.ref} is not a pixel2style2pixel checkout (no models/psp.py)")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = reference_outputs(a.ref)
    commit = a.commit
    if commit is None:
        try:
            commit = subprocess.run(["git", "-C", str(a.ref), "rev-parse", "HEAD"], capture_output=True, text=True,
                                    check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown"
    out["meta"] = {"reference": f"eladrich/pixel2style2pixel {commit}", "output_size": OUTPUT_SIZE,
                   "latent_mask": list(LATENT_MASK), "mix_alpha": MIX_ALPHA, "mix_seed": MIX_SEED,
                   "torch": str(torch.__version__), "made_by": "scripts/psp_reference_outputs.py"}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".tmp")
    torch.save(out, tmp)
    tmp.replace(a.out)
    print(f"wrote {a.out} ({a.out.stat().st_size // 1024} KiB): codes {tuple(out['codes'].shape)}, "
          f"id_loss {float(out['id_loss']):.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
