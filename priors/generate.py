"""Render samples and style-mixing grids from a prior (`cli.py generate`)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import torch
from torchvision.utils import make_grid, save_image

from priors.loaders import load_prior


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
                    raise ValueError(f"{flag}: range '{part}' goes backwards")
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError as e:
            if str(e).startswith(flag):
                raise
            raise ValueError(f"{flag}: expected integers and ranges such as 0-3,7, got '{text}'") from e
    if not seeds:
        raise ValueError(f"{flag}: no number in '{text}'")
    return seeds


def z_for(seeds: List[int], z_dim: int) -> torch.Tensor:
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])


@torch.no_grad()
def generate(prior: str | Path, seeds: List[int], out: str | Path, trunc: float = 1.0,
             noise_mode: str = "const", mix_seeds: Optional[List[int]] = None, mix_layers: str = "coarse") -> Path:
    """A grid of samples (one per seed), or with `mix_seeds` a style-mixing grid: rows = seeds (content),
    columns = mix seeds whose styles replace the `mix_layers` (coarse / middle / fine) of each row."""
    G = load_prior(prior)
    ws = G.mapping(z_for(seeds, G.z_dim), truncation_psi=trunc)
    if not mix_seeds:
        imgs = G.synthesis(ws, noise_mode=noise_mode)
        nrow = max(1, int(len(seeds) ** 0.5))
    else:
        n = G.num_ws
        layers = {"coarse": range(0, min(4, n)), "middle": range(min(4, n), min(8, n)),
                  "fine": range(min(8, n), n)}.get(mix_layers)
        if layers is None:
            raise ValueError(f"mix_layers: expected coarse, middle or fine, got '{mix_layers}'")
        ws_mix = G.mapping(z_for(mix_seeds, G.z_dim), truncation_psi=trunc)
        rows = []
        for i in range(len(seeds)):
            row = [G.synthesis(ws[i:i + 1], noise_mode=noise_mode)]
            row += [G.synthesis(G.mix_styles(ws[i:i + 1], ws_mix[j:j + 1], layers), noise_mode=noise_mode)
                    for j in range(len(mix_seeds))]
            rows.append(torch.cat(row))
        imgs = torch.cat(rows)
        nrow = len(mix_seeds) + 1
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid((imgs.clamp(-1, 1) + 1) / 2, nrow=nrow, padding=2, pad_value=1.0), out)
    return out
