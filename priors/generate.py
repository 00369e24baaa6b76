"""Render samples and style-mixing grids from a prior (`cli.py generate`); for StyleGAN3 priors also translated
or rotated renders (the input transform, as NVIDIA's gen_images.py sets it) and animations of a continuous
translation or rotation, written as a GIF (PIL) or an MP4 (OpenCV, which albumentations already brings)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from torchvision.utils import make_grid, save_image

from priors.loaders import load_prior

from safeio import ConfigError, file_on_path, write_atomic


def parse_pair(text: str, flag: str = "--translate") -> Tuple[float, float]:
    """'0.25,-0.1' -> (0.25, -0.1); errors name `flag`."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag}: expected two numbers X,Y (fractions of the image side), got '{text}'",
                          key=flag) from None
    return x, y


def parse_seeds(text: str, flag: str = "--seeds") -> List[int]:
    """'0-3,7,9' -> [0, 1, 2, 3, 7, 9]; errors name `flag`."""
    seeds: List[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ConfigError(f"{flag}: range '{part}' goes backwards", key=flag)
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError as e:
            if str(e).startswith(flag):
                raise
            raise ConfigError(f"{flag}: expected integers and ranges such as 0-3,7, got '{text}'", key=flag) from e
    if not seeds:
        raise ConfigError(f"{flag}: no number in '{text}'", key=flag)
    return seeds


def z_for(seeds: List[int], z_dim: int) -> torch.Tensor:
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])


GRID_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
MAX_GRID = 1024  # images in one grid file; more go to a folder, one file per seed
BATCH = 16  # images rendered per network call


def check_out(out: str | Path, n_images: int, grid: bool, flag: str = "--out") -> Path:
    """Where `generate`/`interpolate` may write, checked before anything renders: a grid goes to an image file of a
    known format (at most MAX_GRID images); single images go to a folder. Nothing under an existing file."""
    out = Path(out)
    blocker = file_on_path(out.parent)
    if blocker is not None:
        raise NotADirectoryError(f"{flag} {out}: {blocker} is a file")
    if grid:
        if out.suffix.lower() not in GRID_SUFFIXES:
            raise ConfigError(f"{flag} {out}: expected an image file for the grid ({', '.join(GRID_SUFFIXES)})",
                              key=flag)
        if out.is_dir():
            raise IsADirectoryError(f"{flag} {out}: is a folder; expected an image file for the grid")
        if n_images > MAX_GRID:
            raise ConfigError(f"{flag} {out}: a grid of {n_images} images is more than {MAX_GRID}; write one image "
                              "per seed into a folder instead (--out FOLDER)", key=flag)
    elif out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{flag} {out}: expected a folder for one image per seed, got a file")
    return out


def save_grid(images: torch.Tensor, out: str | Path, nrow: int) -> Path:
    """A grid of images (N, 3, H, W) in [-1, 1], written atomically in the format of `out`'s suffix."""
    out = Path(out)
    grid = make_grid((images.clamp(-1, 1) + 1) / 2, nrow=nrow, padding=2, pad_value=1.0)
    write_atomic(out, lambda tmp: save_image(grid, tmp, format=GRID_SUFFIXES[out.suffix.lower()]))
    return out


def _render(G, ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
    return torch.cat([G.synthesis(ws[i:i + BATCH], noise_mode=noise_mode) for i in range(0, len(ws), BATCH)])


ANIMATION_SUFFIXES = (".gif", ".mp4")
ANIMATION_FPS = 12


def _set_transform(G, prior, translate: Optional[Sequence[float]], rotate: Optional[float]) -> None:
    """Replace a StyleGAN3 prior's input transform (gen_images.py's --translate / --rotate); refused for
    StyleGAN2, which has no input transform."""
    if translate is None and rotate is None:
        return
    if not hasattr(G, "set_transform"):
        raise ConfigError(f"--translate/--rotate need a StyleGAN3 prior (an input transform); {prior} is "
                          f"{getattr(G, 'architecture', 'stylegan2')}", key="--translate")
    G.set_transform(tuple(translate) if translate is not None else (0.0, 0.0), float(rotate or 0.0))


def write_animation(frames: List[torch.Tensor], out: Path, fps: int = ANIMATION_FPS) -> Path:
    """Frames (3, H, W) in [-1, 1] -> an animated GIF (PIL) or an MP4 (OpenCV, mp4v), written atomically."""
    import numpy as np
    from PIL import Image

    arrays = [((f.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy() for f in frames]
    if out.suffix.lower() == ".gif":
        images = [Image.fromarray(a) for a in arrays]
        write_atomic(out, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                     duration=round(1000 / fps), loop=0))
        return out
    import cv2

    def write(tmp):
        video = f"{tmp}.mp4"  # OpenCV picks the container from the file name
        h, w = arrays[0].shape[:2]
        writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"{out}: OpenCV cannot write MP4 here (no mp4v encoder); write a .gif instead")
        try:
            for a in arrays:
                writer.write(np.ascontiguousarray(a[:, :, ::-1]))  # OpenCV wants BGR
        finally:
            writer.release()
        os.replace(video, tmp)

    write_atomic(out, write)
    return out


@torch.no_grad()
def animate(prior: str | Path, seeds: List[int], out: str | Path, frames: int = 24, trunc: float = 1.0,
            translate: Optional[Sequence[float]] = None, rotate: Optional[float] = None) -> Path:
    """An animation of a StyleGAN3 prior's output under a continuous input transform: frame k of `frames` renders
    the grid of `seeds` translated by k / (frames - 1) * translate and rotated by k / (frames - 1) * rotate
    degrees (from the identity to the given end point). `out` ends in .gif or .mp4."""
    out = Path(out)
    if out.suffix.lower() not in ANIMATION_SUFFIXES:
        raise ConfigError(f"--out {out}: an animation is written as {' or '.join(ANIMATION_SUFFIXES)}", key="--out")
    if frames < 2:
        raise ConfigError(f"--animate: expected at least 2 frames, got {frames}", key="--animate")
    if translate is None and rotate is None:
        raise ConfigError("--animate needs the motion's end point: --translate X,Y and/or --rotate DEG",
                          key="--animate")
    check_out(out.with_suffix(".png"), len(seeds), grid=True)
    G = load_prior(prior)
    _set_transform(G, prior, (0.0, 0.0), 0.0)  # refuses StyleGAN2 before anything renders
    ws = G.mapping(z_for(seeds, G.z_dim), truncation_psi=trunc)
    tx, ty = translate if translate is not None else (0.0, 0.0)
    pictures = []
    for k in range(frames):
        t = k / (frames - 1)
        G.set_transform((t * tx, t * ty), t * float(rotate or 0.0))
        imgs = _render(G, ws, "const")
        pictures.append(make_grid(imgs, nrow=max(1, int(len(seeds) ** 0.5)), padding=2, pad_value=1.0))
    return write_animation(pictures, out)


@torch.no_grad()
def generate(prior: str | Path, seeds: List[int], out: str | Path, trunc: float = 1.0,
             noise_mode: str = "const", mix_seeds: Optional[List[int]] = None, mix_layers: str = "coarse",
             translate: Optional[Sequence[float]] = None, rotate: Optional[float] = None) -> Path:
    """A grid of samples (one per seed) when `out` is an image file; with `mix_seeds` a style-mixing grid: rows =
    seeds (content), columns = mix seeds whose styles replace the `mix_layers` (coarse / middle / fine) of each row.
    When `out` is a folder (no image suffix): one image per seed, `seed0042.png` (as NVIDIA's gen_images.py), rendered
    BATCH at a time, e.g. for FID. translate (x, y) and rotate (degrees) replace a StyleGAN3 prior's input
    transform, as NVIDIA's gen_images.py does."""
    grid = Path(out).suffix != "" or bool(mix_seeds)
    n_images = len(seeds) * (len(mix_seeds) + 1 if mix_seeds else 1)
    out = check_out(out, n_images, grid)
    if not grid and Path(prior).is_dir() and out.resolve() == Path(prior).resolve():
        raise ConfigError(f"--out {out} is the prior's folder; choose another folder for the images", key="--out")
    G = load_prior(prior)
    _set_transform(G, prior, translate, rotate)
    if not grid:
        for i in range(0, len(seeds), BATCH):
            chunk = seeds[i:i + BATCH]
            imgs = G.synthesis(G.mapping(z_for(chunk, G.z_dim), truncation_psi=trunc), noise_mode=noise_mode)
            for seed, img in zip(chunk, imgs):
                save_grid(img[None], out / f"seed{seed:04d}.png", nrow=1)  # a grid of one: the image itself
        return out
    ws = G.mapping(z_for(seeds, G.z_dim), truncation_psi=trunc)
    if not mix_seeds:
        return save_grid(_render(G, ws, noise_mode), out, nrow=max(1, int(len(seeds) ** 0.5)))
    n = G.num_ws
    layers = {"coarse": range(0, min(4, n)), "middle": range(min(4, n), min(8, n)),
              "fine": range(min(8, n), n)}.get(mix_layers)
    if layers is None:
        raise ConfigError(f"mix_layers: expected coarse, middle or fine, got '{mix_layers}'", key="mix_layers")
    ws_mix = G.mapping(z_for(mix_seeds, G.z_dim), truncation_psi=trunc)
    rows = [torch.cat([ws[i:i + 1]] + [G.mix_styles(ws[i:i + 1], ws_mix[j:j + 1], layers)
                                       for j in range(len(mix_seeds))]) for i in range(len(seeds))]
    return save_grid(_render(G, torch.cat(rows), noise_mode), out, nrow=len(mix_seeds) + 1)
