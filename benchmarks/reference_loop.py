"""The reference-equivalent loop: the work the reference code's `test.py --model test` does per image, written by
us (not the reference's code), as the baseline row of `predict_throughput.py` when no checkout of the reference
is given.

What it does, as the reference's test script does: build the generator of the reference's architecture (`nets`
builds the same modules with the same state-dict keys, which is what `translate import --from junyanz` relies on)
and load `latest_net_G.pth` into it; then for each image of the folder in name order, one at a time (batch 1, no
data-loader workers): PIL load -> RGB -> bicubic resize to `--size` x `--size` -> tensor in [-1, 1] -> the net in
eager PyTorch (fp32, torch's default thread count, no gradients) -> back to 8 bits -> PNG. The reference also
writes an HTML index of the results; this loop does not (a few kilobytes of text).

    python benchmarks/reference_loop.py --weights ckpt/bench/latest_net_G.pth --netG resnet_9blocks \
        --norm instance --input images/ --output out/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, required=True, help="latest_net_G.pth in the reference's layout")
    ap.add_argument("--netG", required=True, help="unet_256 or resnet_9blocks")
    ap.add_argument("--norm", required=True, help="batch or instance (the reference's --norm)")
    ap.add_argument("--input", type=Path, required=True, help="folder of images")
    ap.add_argument("--output", type=Path, required=True, help="folder for the PNG results")
    ap.add_argument("--size", type=int, default=256, help="the reference's --load_size / --crop_size")
    args = ap.parse_args(argv)

    from nets import build_generator

    net = build_generator(name=args.netG, input_nc=3, output_nc=3, norm=args.norm)
    net.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    net.eval()
    prepare = transforms.Compose([transforms.Resize([args.size, args.size], transforms.InterpolationMode.BICUBIC),
                                  transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    args.output.mkdir(parents=True, exist_ok=True)
    files = sorted(f for f in args.input.iterdir() if f.suffix.lower() in SUFFIXES)
    with torch.no_grad():
        for f in files:
            x = prepare(Image.open(f).convert("RGB"))[None]
            y = net(x)[0].float().numpy()
            image = ((np.transpose(y, (1, 2, 0)) + 1) / 2 * 255).clip(0, 255).astype(np.uint8)
            Image.fromarray(image).save(args.output / f"{f.stem}.png")
    print(f"{len(files)} images written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
