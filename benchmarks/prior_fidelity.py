"""How faithfully a StyleGAN2 prior can reproduce held-out images: the ceiling of any encoder into it.

Unregularised W+ optimisation (Adam, constant noise) of every face from the prior's average latent towards the
face itself; the table gives the mean PSNR after each number of steps. A pSp translator through this prior cannot
do better than these numbers on the same images (its encoder predicts one code in a single pass).

    python benchmarks/prior_fidelity.py --prior runs/prior_toyfaces64/prior --faces 16 --steps 100 200 400 600

Faces: the held-out toy faces of the pSp demos (`data.toyfaces` seed 1, validation split, frontal and turned), at
the prior's resolution.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def held_out_faces(n: int, size: int, seed: int = 1) -> torch.Tensor:
    """(n, 3, size, size) toy faces in [-1, 1] that the toy prior never saw (it trains on seed 0)."""
    import numpy as np

    from datamodules.toyfaces import ToyFaces

    faces = ToyFaces(n, size, seed=seed, split="val").arrays()["image"]
    return torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float() / 127.5 - 1


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [-1, 1]."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio((a.clamp(-1, 1) + 1) / 2, (b + 1) / 2, data_range=1.0, reduction="none",
                                   dim=(1, 2, 3))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prior", required=True, help="any file or folder priors.load_prior reads")
    p.add_argument("--faces", type=int, default=16)
    p.add_argument("--steps", type=int, nargs="+", default=[100, 200, 400, 600])
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    from priors import load_prior

    G = load_prior(args.prior).to(args.device).eval().requires_grad_(False)
    y = held_out_faces(args.faces, G.img_resolution).to(args.device)
    ws = G.mapping.w_avg.detach().repeat(len(y), G.n_latent, 1).requires_grad_(True)
    opt = torch.optim.Adam([ws], lr=args.lr)
    print(f"prior {args.prior}: {G.img_resolution} px; {len(y)} held-out toy faces; Adam {args.lr} on W+")
    print(f"{'steps':>6} {'PSNR (dB)':>10} {'seconds':>8}")
    start, marks = time.time(), set(args.steps)
    for step in range(max(args.steps) + 1):
        out = G.synthesis(ws, noise_mode="const")
        if step in marks or step == 0:
            print(f"{step:>6} {psnr(out.detach(), y).mean().item():>10.2f} {time.time() - start:>8.1f}", flush=True)
        if step == max(args.steps):
            break
        opt.zero_grad(set_to_none=True)
        (out - y).square().mean().backward()
        opt.step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
