"""GAN inversion through a pSp net: real images -> W+ codes of its frozen StyleGAN2, and back.

Three ways to find the code w of an image x, from fast to faithful:
- `encoder`: one pass of the pSp encoder, w = E(x);
- `restyle K`: ReStyle's K iterations, w_0 = the average latent, w_{t+1} = w_t + E([x, G(w_t)]), for an encoder
  trained on the input and the current reconstruction (2 x 3 input channels);
- `refine N`: N Adam steps on w from the encoder's code, minimising (In-Domain GAN Inversion, Zhu et al. 2020)
      ||x - G(w)||^2 + lambda_vgg * LPIPS(x, G(w)) + lambda_dom * ||w - E(G(w))||^2
  with the encoder as the regulariser that keeps w inside its semantic domain; lambda_dom = 0 is the plain
  optimisation baseline (Image2StyleGAN-like). The squared norms are means over pixels and code entries.
  With a degradation D (`--degrade downsample:8`, blur, grayscale, jpeg; translate/tools/degradations.py) the image
  terms compare D(G(w)) with the (degraded) input instead, as PULSE does, and the domain term keeps w where the
  encoder would put a clean image: the full-resolution G(w) is the restoration.

Codes are written as safetensors (key "w", (n_latent, w_dim), metadata n_latent / w_dim) beside the reconstruction
PNG. `interpolate` and `mix_grid` decode codes back to image grids (linear paths in W+, style mixing of layer ranges).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datamodules.io import DataError
from nets.psp import PSPNet
from safeio import ConfigError, LoadError
from translate.tools.degradations import Degradation, check_size

IMAGE_CHANNELS = 3  # the prior's images: RGB
CODE_KEY = "w"
CODE_FORMAT = "translate-kit/wplus"
LAMBDA_DOM = 2.0  # weight of the domain term (In-Domain GAN Inversion's default)
LAMBDA_VGG = 1.0  # weight of the perceptual term (LPIPS here; the paper used VGG feature MSE)
REFINE_LR = 0.01  # Adam step size on w (In-Domain GAN Inversion)
LPIPS_MIN_SIZE = 32  # below this side (a downsampled render) the LPIPS term is left out: AlexNet sees ~nothing
MIX_BOUNDS_1024 = (4, 8, 18)  # StyleGAN's coarse 0-3 / medium 4-7 / fine 8-17 layers of an 18-code 1024-px prior


# ---- loading a pSp net ---------------------------------------------------------------------------------------
def load_psp_net(ckpt: Optional[str | Path] = None, model: Optional[str | Path] = None,
                 device: str | torch.device = "cpu") -> PSPNet:
    """The frozen, deterministic pSp net of a training checkpoint (`ckpt`, output pooled to the run's loss size)
    or of an exported/imported pSp bundle (`model`, full resolution)."""
    if (ckpt is None) == (model is None):
        raise ConfigError("give exactly one of --ckpt (a pSp training checkpoint) or --model (a pSp bundle)",
                          key="--ckpt")
    if ckpt is not None:
        from translate.train import runner

        cfg, module = runner.load_run(ckpt)
        if cfg.method != "psp":
            raise ConfigError(f"--ckpt {ckpt}: a '{cfg.method}' run; inversion needs a pSp run (method: psp)",
                              key="--ckpt")
        net = module.inference_net()
    else:
        from translate.deploy.inference import _eager_psp, read_meta

        folder, meta = read_meta(model)
        if meta.get("method") != "psp" or not isinstance(meta.get("psp"), dict):
            raise ConfigError(f"--model {model}: a '{meta.get('method')}' bundle; inversion needs a pSp bundle",
                              key="--model")
        net = _eager_psp(folder, meta, torch.device(device)).net
    net.noise_mode = "const"
    return net.eval().requires_grad_(False).to(device)


def is_restyle(net: PSPNet) -> bool:
    """Whether the encoder was trained with ReStyle (fed [image, current reconstruction], residual codes)."""
    return getattr(net, "restyle_iters", 0) > 0


def check_invertible(net: PSPNet) -> None:
    if getattr(net, "feature_res", 0):
        raise LoadError(f"inversion works in W+: this encoder was trained with model.feature_res "
                        f"{net.feature_res}, so its outputs depend on a feature offset besides the codes, and the "
                        f"codes alone do not reconstruct the image (invert with an encoder trained with "
                        f"feature_res 0)")
    want = 2 * IMAGE_CHANNELS if is_restyle(net) else IMAGE_CHANNELS
    if int(net.encoder.input_nc) != want:
        raise LoadError(f"inversion encodes RGB images: expected an encoder with {want} input channels"
                        f"{' (ReStyle: image + reconstruction)' if is_restyle(net) else ''}, this one takes "
                        f"{net.encoder.input_nc} (a translation encoder, e.g. of sketches or label maps, cannot "
                        f"invert images)")


# ---- encoding ------------------------------------------------------------------------------------------------
def to_encoder_size(net: PSPNet, img: torch.Tensor) -> torch.Tensor:
    s = int(net.encoder.input_size)
    if img.shape[-2:] == (s, s):
        return img
    return F.interpolate(img, size=(s, s), mode="bilinear", align_corners=False, antialias=True)


def restyle_encode(net: PSPNet, img: torch.Tensor, iters: int) -> torch.Tensor:
    """ReStyle: w_0 = average latent, w_{t+1} = w_t + E([x, G(w_t)]) for t < iters (differentiable)."""
    if not is_restyle(net):
        raise LoadError(f"ReStyle needs a ReStyle-trained encoder (trained with model.restyle_iters > 0, fed the "
                        f"image and the current reconstruction); this is a plain pSp encoder of "
                        f"{net.encoder.input_nc} channels")
    if iters < 1:
        raise ConfigError(f"restyle iterations: expected >= 1, got {iters}", key="--restyle")
    check_invertible(net)
    return net.encode(to_encoder_size(net, img), iters)


def encode(net: PSPNet, img: torch.Tensor, restyle_iters: int = 1) -> torch.Tensor:
    """E(img): W+ codes (N, n_styles, w_dim) of images at any size (resized to the encoder's input); a ReStyle
    encoder runs `restyle_iters` iterations (its training's restyle_iters need not be the same)."""
    if is_restyle(net):
        return restyle_encode(net, img, restyle_iters)
    check_invertible(net)
    return net.encode(to_encoder_size(net, img))


def domain_distance(net: PSPNet, w: torch.Tensor, restyle_iters: int = 1,
                    rec: Optional[torch.Tensor] = None) -> torch.Tensor:
    """||w - E(G(w))|| per code (N,): how far w lies from what the encoder makes of its own reconstruction
    (`rec` = G(w) when the caller has it already)."""
    rec = net.decode(w) if rec is None else rec
    return (w - encode(net, rec, restyle_iters)).flatten(1).norm(dim=1)


# ---- refinement ------------------------------------------------------------------------------------------------
def refine_objective(net: PSPNet, w: torch.Tensor, target: torch.Tensor, lambda_vgg: float, lambda_dom: float,
                     lpips: Optional[nn.Module], restyle_iters: int = 1,
                     degrade: Optional[Degradation] = None) -> Dict[str, torch.Tensor]:
    """The In-Domain GAN Inversion objective's terms (key "loss" is the weighted sum), per the module docstring;
    with `degrade`, `target` is the degraded input and the image terms see the degraded render."""
    rec = net.decode(w)
    seen = rec if degrade is None else degrade(rec)
    terms = {"mse": F.mse_loss(seen, target)}
    loss = terms["mse"]
    if lambda_vgg > 0 and lpips_applies(lpips, seen, degrade):
        terms["lpips"] = lpips(seen, target).mean()
        loss = loss + lambda_vgg * terms["lpips"]
    if lambda_dom > 0:
        terms["dom"] = F.mse_loss(w, encode(net, rec, restyle_iters))
        loss = loss + lambda_dom * terms["dom"]
    terms["loss"] = loss
    return terms


def lpips_applies(lpips: Optional[nn.Module], seen: torch.Tensor, degrade: Optional[Degradation]) -> bool:
    """LPIPS is used when given, except on degraded renders smaller than LPIPS_MIN_SIZE."""
    return lpips is not None and (degrade is None or seen.shape[-1] >= LPIPS_MIN_SIZE)


def refine(net: PSPNet, w_init: torch.Tensor, target: torch.Tensor, steps: int, lambda_vgg: float = LAMBDA_VGG,
           lambda_dom: float = LAMBDA_DOM, lpips: Optional[nn.Module] = None, lr: float = REFINE_LR,
           restyle_iters: int = 1, degrade: Optional[Degradation] = None) -> tuple[torch.Tensor, List[float]]:
    """`steps` Adam steps on w from `w_init`; returns the final code and the objective before each step and after
    the last (steps + 1 values)."""
    w = w_init.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    history: List[float] = []
    for _ in range(steps):
        terms = refine_objective(net, w, target, lambda_vgg, lambda_dom, lpips, restyle_iters, degrade)
        history.append(float(terms["loss"].detach()))
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
    with torch.no_grad():
        history.append(float(refine_objective(net, w, target, lambda_vgg, lambda_dom, lpips,
                                              restyle_iters, degrade)["loss"]))
    return w.detach(), history


# ---- one image, one folder -----------------------------------------------------------------------------------
@dataclass
class Inversion:
    stem: str
    w: torch.Tensor  # (n_latent, w_dim)
    recon: torch.Tensor  # (3, H, W) in [-1, 1], at the net's output size
    mse: float
    seconds: float
    domain: float  # ||w - E(G(w))||
    lpips: Optional[float] = None
    history: List[float] = field(default_factory=list)  # refinement objective, before each step and at the end


def output_size(net: PSPNet) -> int:
    return int(net.resize or net.decoder.img_resolution)


def to_target(net: PSPNet, img: torch.Tensor) -> torch.Tensor:
    """An image batch resized to the net's output size: what the reconstruction is compared with."""
    s = output_size(net)
    if img.shape[-2:] == (s, s):
        return img
    return F.interpolate(img, size=(s, s), mode="bilinear", align_corners=False, antialias=True)


def invert_image(net: PSPNet, img: torch.Tensor, stem: str = "image", refine_steps: int = 0, restyle: int = 0,
                 lambda_vgg: float = LAMBDA_VGG, lambda_dom: float = LAMBDA_DOM, lpips: Optional[nn.Module] = None,
                 lr: float = REFINE_LR, degrade: Optional[Degradation] = None) -> Inversion:
    """Invert one image (3, H, W) in [-1, 1]: encoder pass (or `restyle` ReStyle iterations), then optionally
    `refine_steps` steps of the objective above. With `degrade` the image is the degraded observation (e.g. the
    small image for downsample:8) and `mse` is the consistency error ||D(G(w)) - x||^2."""
    if img.dim() != 3 or img.shape[0] != IMAGE_CHANNELS:
        raise ValueError(f"invert_image: expected an RGB image (3, H, W), got {tuple(img.shape)}")
    check_options(refine_steps, restyle, lambda_vgg, lambda_dom, lr, degrade)
    if restyle and not is_restyle(net):
        restyle_encode(net, img[None], restyle)  # raises the error that explains what ReStyle needs
    check_invertible(net)
    iters = restyle or getattr(net, "restyle_iters", 0) or 1  # a ReStyle net: its trained iterations by default
    if lpips is None:
        lambda_vgg = 0.0
    x = img[None].to(net.latent_avg.device)
    start = time.perf_counter()
    with torch.no_grad():
        w = encode(net, x, iters)
    if degrade is None:
        target = to_target(net, x)
    else:
        check_size(degrade, output_size(net))
        target = degrade.target(x, output_size(net))
    history: List[float] = []
    if refine_steps > 0:
        w, history = refine(net, w, target, refine_steps, lambda_vgg, lambda_dom, lpips, lr, iters, degrade)
    with torch.no_grad():
        recon = net.decode(w)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        seen = recon if degrade is None else degrade(recon)
        dist = float(domain_distance(net, w, iters, rec=recon)[0])
        lp = float(lpips(seen, target).mean()) if lpips_applies(lpips, seen, degrade) else None
    return Inversion(stem, w[0].cpu(), recon[0].cpu(), float(F.mse_loss(seen, target)), seconds, dist, lp, history)


def check_options(refine_steps: int = 0, restyle: int = 0, lambda_vgg: float = LAMBDA_VGG,
                  lambda_dom: float = LAMBDA_DOM, lr: float = REFINE_LR, degrade: Optional[Degradation] = None,
                  **_: Any) -> None:
    """Out-of-range options of `invert_image` (others are ignored) are errors naming the option, not silently
    "off"."""
    if not isinstance(refine_steps, int) or refine_steps < 0:
        raise ConfigError(f"--refine: expected a number of steps >= 0, got {refine_steps!r}", key="--refine")
    if not isinstance(restyle, int) or restyle < 0:
        raise ConfigError(f"--restyle: expected a number of ReStyle iterations >= 1 (0: the net's own), got "
                          f"{restyle!r}", key="--restyle")
    for name, value in (("--lambda-vgg", lambda_vgg), ("--lambda-dom", lambda_dom)):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name}: expected a weight >= 0, got {value}", key=name)
    if not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"--lr: expected a learning rate > 0, got {lr}", key="--lr")
    if degrade is not None and refine_steps < 1:
        raise ConfigError(f"--degrade {degrade}: inversion through a degradation optimises the code; give --refine N "
                          f"(N >= 1 steps)", key="--degrade")


def read_rgb(path: str | Path) -> torch.Tensor:
    """An image file as a (3, H, W) float tensor in [-1, 1]."""
    from datamodules.io import read_image

    a = read_image(path, IMAGE_CHANNELS)
    return torch.from_numpy(a).permute(2, 0, 1).float() / 127.5 - 1


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return ((img.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def invert_folder(net: PSPNet, input: str | Path, out: str | Path, **kwargs) -> List[Inversion]:
    """Invert every image of `input` (see `invert_image` for the options); writes `<stem>.safetensors` (the code)
    and `<stem>.png` (the reconstruction) into `out`."""
    from datamodules.io import BadImageError, list_images, write_image

    check_options(**kwargs)  # before any output is written
    files = list_images(input)
    out = Path(out)
    if out.resolve() == Path(input).resolve():
        raise ConfigError(f"--out {out} is the input folder: the reconstructions would overwrite the inputs",
                          key="--out")
    by_stem: Dict[str, Path] = {}
    for path in files:
        if path.stem in by_stem:
            raise DataError(f"{by_stem[path.stem].name} and {path.name} would both be written as {path.stem}"
                            f".safetensors/.png in {out}; rename one of them")
        by_stem[path.stem] = path
    replaced = sum((out / f"{stem}{suffix}").exists() for stem in by_stem for suffix in (".safetensors", ".png"))
    if replaced:
        warnings.warn(f"{out}: {replaced} existing file(s) will be replaced by this run's codes and reconstructions",
                      stacklevel=2)
    out.mkdir(parents=True, exist_ok=True)
    results, squashed = [], []
    for path in files:
        try:
            img = read_rgb(path)
        except BadImageError as e:  # as predict: reported and skipped, the other images are still inverted
            warnings.warn(f"skipping {path}: {e.reason or e}", stacklevel=2)
            continue
        if img.shape[-1] != img.shape[-2]:
            squashed.append(path.name)
        r = invert_image(net, img, path.stem, **kwargs)
        save_code(r.w, out / f"{r.stem}.safetensors")
        write_image(out / f"{r.stem}.png", to_uint8(r.recon))
        results.append(r)
    if squashed:
        warnings.warn(f"{len(squashed)} image(s) are not square ({', '.join(squashed[:3])}"
                      f"{', ...' if len(squashed) > 3 else ''}): resized to the prior's square output, which distorts "
                      f"them; inversion expects aligned square crops", stacklevel=2)
    return results


def format_results(results: Sequence[Inversion]) -> str:
    rows = ["image | MSE | LPIPS | ||w - E(G(w))|| | seconds"]
    for r in results:
        lp = f"{r.lpips:.4f}" if r.lpips is not None else "-"
        rows.append(f"{r.stem} | {r.mse:.5f} | {lp} | {r.domain:.4f} | {r.seconds:.3f}")
    if len(results) > 1:
        lps = [r.lpips for r in results if r.lpips is not None]
        lp = f"{np.mean(lps):.4f}" if lps else "-"
        rows.append(f"mean | {np.mean([r.mse for r in results]):.5f} | {lp} | "
                    f"{np.mean([r.domain for r in results]):.4f} | {np.mean([r.seconds for r in results]):.3f}")
    return "\n".join(rows)


# ---- codes on disk ---------------------------------------------------------------------------------------------
def save_code(w: torch.Tensor, path: str | Path) -> Path:
    """Write a W+ code (n_latent, w_dim) as safetensors (key "w"), atomically."""
    from safetensors.torch import save_file

    from safeio import write_atomic

    if w.dim() != 2:
        raise ValueError(f"save_code: expected a W+ code (n_latent, w_dim), got {tuple(w.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": CODE_FORMAT, "n_latent": str(w.shape[0]), "w_dim": str(w.shape[1])}
    tensor = w.detach().float().cpu().contiguous()
    write_atomic(path, lambda p: save_file({CODE_KEY: tensor}, p, metadata=meta))
    return path


def load_code(path: str | Path, net: Optional[PSPNet] = None) -> torch.Tensor:
    """A W+ code written by `save_code`; with `net`, checked against its prior's n_latent x w_dim."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"code file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            if CODE_KEY not in f.keys():
                raise LoadError(f"{path}: no '{CODE_KEY}' tensor (keys {sorted(f.keys())}); expected a code "
                                f"written by `invert`")
            w = f.get_tensor(CODE_KEY).float()
    except (SafetensorError, OSError) as e:
        raise LoadError(f"{path}: not a safetensors code file ({e})") from e
    if w.dim() == 3 and w.shape[0] == 1:
        w = w[0]
    if net is not None:
        want = (net.n_styles, int(net.decoder.w_dim))
        if tuple(w.shape) != want:
            raise LoadError(f"{path}: the code is {tuple(w.shape)} (n_latent, w_dim), the prior takes {want}")
    elif w.dim() != 2:
        raise LoadError(f"{path}: expected a W+ code (n_latent, w_dim), got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise LoadError(f"{path}: the code holds NaN or infinite values")
    return w


# ---- interpolation and style mixing ---------------------------------------------------------------------------
def check_steps(steps: int) -> None:
    """Images along an interpolation path: both ends, and at most a grid's worth."""
    from priors.generate import MAX_GRID

    if not 2 <= steps <= MAX_GRID:
        raise ConfigError(f"--steps: expected 2 (the two ends) to {MAX_GRID}, got {steps}", key="--steps")


def interpolate(net: PSPNet, w_a: torch.Tensor, w_b: torch.Tensor, steps: int) -> torch.Tensor:
    """Images (steps, 3, H, W) along the straight line from w_a to w_b in W+ (both ends included)."""
    from priors.generate import BATCH

    check_steps(steps)
    t = torch.linspace(0, 1, steps, device=w_a.device).view(-1, 1, 1)
    ws = w_a[None] + t * (w_b - w_a)[None]  # (steps, n_latent, w_dim)
    with torch.no_grad():
        return torch.cat([net.decode(ws[i:i + BATCH]) for i in range(0, steps, BATCH)])


def mix_layers(n_latent: int, level: str) -> List[int]:
    """The layers of `level` (coarse / medium / fine): 0-3 / 4-7 / 8+ at 18 codes, scaled proportionally for
    priors with fewer (each level keeps at least one layer)."""
    coarse, medium, total = MIX_BOUNDS_1024
    if n_latent >= total:
        bounds = (coarse, medium)
    else:
        b1 = min(max(1, round(coarse * n_latent / total)), n_latent - 2)
        b2 = min(max(b1 + 1, round(medium * n_latent / total)), n_latent - 1)
        bounds = (b1, b2)
    ranges = {"coarse": range(0, bounds[0]), "medium": range(bounds[0], bounds[1]),
              "fine": range(bounds[1], n_latent)}
    if level not in ranges:
        raise ConfigError(f"--mix: expected coarse, medium or fine, got '{level}'", key="--mix")
    if n_latent < 3:
        raise ConfigError(f"style mixing needs at least 3 codes per image, the prior has {n_latent}", key="--mix")
    return list(ranges[level])


def mix_grid(net: PSPNet, w_a: torch.Tensor, w_b: torch.Tensor, level: str) -> torch.Tensor:
    """Images (4, 3, H, W): a, b, a with b's `level` layers, b with a's `level` layers."""
    layers = mix_layers(net.n_styles, level)
    a, b = w_a[None], w_b[None]
    with torch.no_grad():
        return net.decode(torch.cat([a, b, net.mix(a, b, layers), net.mix(b, a, layers)]))
