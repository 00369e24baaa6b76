"""Render samples and style-mixing grids from a prior (`cli.py generate`)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import torch
from torchvision.utils import make_grid, save_image

from priors.loaders import load_prior

from safeio import ConfigError, file_on_path, write_atomic


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


@torch.no_grad()
def generate(prior: str | Path, seeds: List[int], out: str | Path, trunc: float = 1.0,
             noise_mode: str = "const", mix_seeds: Optional[List[int]] = None, mix_layers: str = "coarse") -> Path:
    """A grid of samples (one per seed) when `out` is an image file; with `mix_seeds` a style-mixing grid: rows =
    seeds (content), columns = mix seeds whose styles replace the `mix_layers` (coarse / middle / fine) of each row.
    When `out` is a folder (no image suffix): one image per seed, `seed0042.png` (as NVIDIA's gen_images.py), rendered
    BATCH at a time, e.g. for FID."""
    grid = Path(out).suffix != "" or bool(mix_seeds)
    n_images = len(seeds) * (len(mix_seeds) + 1 if mix_seeds else 1)
    out = check_out(out, n_images, grid)
    if not grid and Path(prior).is_dir() and out.resolve() == Path(prior).resolve():
        raise ConfigError(f"--out {out} is the prior's folder; choose another folder for the images", key="--out")
    G = load_prior(prior)
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
