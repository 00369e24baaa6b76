"""GAN inversion: quality against time, for one pSp net and a set of images (issue 6's table).

Rows: the encoder's single pass, ReStyle K iterations (only for an encoder trained with ReStyle: 6 input channels),
refinement from the encoder's code for N steps with the domain term (In-Domain GAN Inversion) and for the largest N
without it (Image2StyleGAN-like). Columns: MSE to the image (at the net's output size), LPIPS (with user weight
files), ||w - E(G(w))|| (how far the code lies from the encoder's domain), seconds per image.

    python benchmarks/inversion.py --ckpt runs/psp_toyfaces_restyle/checkpoints/last.ckpt --faces 16
    python benchmarks/inversion.py --model bundle/ --input faces/ --refine 50 200 \
        --lpips-backbone alexnet.pth --lpips-weights alex.pth --device cuda

Without --input, `--faces N` held-out toy faces (the test split) at the net's output size are inverted. Images are
inverted one at a time (so seconds are per image); the numbers are means over the images.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from datamodules.io import list_images  # noqa: E402
from translate.tools import invert  # noqa: E402


def faces_folder(n: int, size: int, out: Path) -> Path:
    from datamodules.toyfaces import write_toyfaces

    return write_toyfaces(out, n=n, size=size, split="test") / "images"


def row(name: str, results: List[invert.Inversion]) -> str:
    lp = [r.lpips for r in results if r.lpips is not None]
    lp_text = f"{statistics.mean(lp):>8.4f}" if lp else f"{'-':>8}"
    return (f"{name:<26} {statistics.mean(r.mse for r in results):>9.5f} {lp_text} "
            f"{statistics.mean(r.domain for r in results):>16.4f} {statistics.mean(r.seconds for r in results):>9.3f}")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="pSp training checkpoint")
    src.add_argument("--model", help="pSp bundle")
    p.add_argument("--input", help="folder of images (default: --faces toy faces)")
    p.add_argument("--faces", type=int, default=8, help="number of held-out toy faces when no --input is given")
    p.add_argument("--refine", type=int, nargs="+", default=[50, 200], help="refinement steps, one row each")
    p.add_argument("--restyle", type=int, nargs="+", default=[1, 3, 5], help="ReStyle iterations (ReStyle nets)")
    p.add_argument("--lambda-dom", type=float, default=invert.LAMBDA_DOM)
    p.add_argument("--lambda-vgg", type=float, default=invert.LAMBDA_VGG)
    p.add_argument("--lr", type=float, default=invert.REFINE_LR)
    p.add_argument("--lpips-net", default="alex", choices=["alex", "vgg"])
    p.add_argument("--lpips-backbone", help="torchvision alexnet/vgg16 state dict")
    p.add_argument("--lpips-weights", help="LPIPS v0.1 heads; without them the LPIPS column and term are off")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    net = invert.load_psp_net(args.ckpt, args.model, device=args.device)
    lpips = None
    if args.lpips_backbone or args.lpips_weights:
        from nets.perceptual import load_lpips

        lpips = load_lpips(args.lpips_net, args.lpips_backbone, args.lpips_weights, backbone_key="--lpips-backbone",
                           heads_key="--lpips-weights").to(args.device)
    else:
        print("note: no LPIPS weights given: LPIPS column and perceptual term off")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.input) if args.input else faces_folder(args.faces, invert.output_size(net), Path(tmp))
        images = [invert.read_rgb(f) for f in list_images(folder)]
        common = dict(lpips=lpips, lambda_vgg=args.lambda_vgg, lr=args.lr)
        restyle = invert.is_restyle(net)
        rows = [("ReStyle K=1 (encoder)" if restyle else "encoder", dict(restyle=1 if restyle else 0))]
        if restyle:
            rows += [(f"ReStyle K={k}", dict(restyle=k)) for k in args.restyle if k != 1]
        rows += [(f"refine N={n}", dict(refine_steps=n, lambda_dom=args.lambda_dom)) for n in args.refine]
        n_max = max(args.refine)
        rows += [(f"refine N={n_max}, no domain", dict(refine_steps=n_max, lambda_dom=0.0))]
        print(f"inversion of {len(images)} images ({folder}), output {invert.output_size(net)} px, "
              f"{net.n_styles} x {net.decoder.w_dim} codes, device {args.device}, {torch.get_num_threads()} threads"
              f"{'' if restyle else '; ReStyle rows need a ReStyle-trained encoder'}")
        print(f"{'method':<26} {'MSE':>9} {'LPIPS':>8} {'||w - E(G(w))||':>16} {'s/image':>9}")
        for name, kw in rows:
            results = [invert.invert_image(net, x, **common, **kw) for x in images]
            print(row(name, results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
