"""Super-resolution on the toy faces: inversion through the degradation (PULSE-like) vs the pSp SR encoder vs bicubic.

For each factor F and each held-out toy face (test split, the prior's output size): the input is the face
downsampled by F with PIL's bicubic (as the `downsample` degradation of the data modules makes SR inputs). Rows:
- bicubic: PIL bicubic upsampling of the input;
- pSp SR encoder (`--sr F=CKPT`): a `method: psp` run trained on that factor (configs/psp/toyfaces_sr.yaml with
  data.degradation.factors=[F]), fed the bicubic-upsampled input as in training;
- inversion encoder: the inversion encoder's code of the (upsampled) input, no optimisation;
- through the degradation: `translate invert --refine N --degrade downsample:F` from that code (domain term on).
Columns: PSNR to the truth, and consistency: PSNR of the output downsampled by F (the same differentiable bicubic
for every row) to the input; seconds per image.

    python benchmarks/degraded_inversion.py --invert-ckpt runs/psp_toyfaces_encode/checkpoints/last.ckpt \
        --sr 4=runs/psp_toyfaces_sr/checkpoints/last.ckpt --factors 4 8 --faces 8 --refine 50
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from translate.tools import invert  # noqa: E402
from translate.tools.degradations import parse_degradation  # noqa: E402


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of images in [-1, 1] (peak-to-peak 2)."""
    return float(10 * torch.log10(4.0 / (a.clamp(-1, 1) - b.clamp(-1, 1)).square().mean().clamp_min(1e-12)))


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a)).permute(2, 0, 1).float() / 127.5 - 1


def pil_resize(img: torch.Tensor, size: int) -> torch.Tensor:
    return to_tensor(Image.fromarray(invert.to_uint8(img)).resize((size, size), Image.BICUBIC))


def load_sr_net(ckpt: str):
    from translate.train import runner

    cfg, module = runner.load_run(ckpt)
    if cfg.method != "psp":
        raise ValueError(f"--sr {ckpt}: a '{cfg.method}' run; expected a pSp SR run")
    net = module.inference_net().eval().requires_grad_(False)
    net.noise_mode = "const"
    return net


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--invert-ckpt", required=True, help="pSp inversion encoder run (task faces)")
    p.add_argument("--sr", nargs="*", default=[], metavar="F=CKPT", help="pSp SR runs, one per factor")
    p.add_argument("--factors", type=int, nargs="+", default=[4, 8])
    p.add_argument("--faces", type=int, default=8)
    p.add_argument("--refine", type=int, default=50)
    p.add_argument("--lambda-dom", type=float, default=invert.LAMBDA_DOM)
    p.add_argument("--lr", type=float, default=invert.REFINE_LR)
    p.add_argument("--seed", type=int, default=2, help="toy-face seed of the held-out faces (test split)")
    args = p.parse_args(argv)

    from datamodules.toyfaces import ToyFaces

    net = invert.load_psp_net(ckpt=args.invert_ckpt)
    size = invert.output_size(net)
    sr = {}
    for item in args.sr:
        f, _, path = item.partition("=")
        sr[int(f)] = load_sr_net(path)
    truths = torch.from_numpy(ToyFaces(args.faces, size, seed=args.seed, split="test").arrays()["image"].copy())
    truths = truths.permute(0, 3, 1, 2).float() / 127.5 - 1
    print(f"{args.faces} held-out toy faces at {size} px, {torch.get_num_threads()} thread(s); refine {args.refine} "
          f"steps, lambda_dom {args.lambda_dom}, lr {args.lr}")
    print(f"{'factor':>6} {'method':<34} {'PSNR to truth':>13} {'consistency PSNR':>16} {'s/image':>8}")
    for f in args.factors:
        d = parse_degradation(f"downsample:{f}")
        methods: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"bicubic": lambda x: pil_resize(x, size)}
        if f in sr:
            methods["pSp SR encoder"] = lambda x, n=sr[f]: n(pil_resize(x, size)[None])[0]
        methods["inversion encoder (no optimisation)"] = lambda x: invert.invert_image(net, x).recon
        methods[f"through the degradation, N={args.refine}"] = lambda x: invert.invert_image(
            net, x, refine_steps=args.refine, degrade=d, lambda_dom=args.lambda_dom, lr=args.lr).recon
        for name, method in methods.items():
            scores, consistency, seconds = [], [], []
            for truth in truths:
                small = pil_resize(truth, size // f)
                start = time.perf_counter()
                with torch.no_grad() if "through" not in name else torch.enable_grad():
                    out = method(small).detach()
                seconds.append(time.perf_counter() - start)
                scores.append(psnr(out, truth))
                with torch.no_grad():
                    consistency.append(psnr(d(out[None])[0], small))
            print(f"{'x' + str(f):>6} {name:<34} {statistics.mean(scores):>13.2f} "
                  f"{statistics.mean(consistency):>16.2f} {statistics.mean(seconds):>8.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
