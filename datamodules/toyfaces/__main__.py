"""`python -m datamodules.toyfaces`: write a preview grid of toy faces; with --bench, also measure the render speed."""
import argparse

from datamodules.toyfaces.tools import benchmark, preview

ap = argparse.ArgumentParser(description="Toy faces: write a preview grid and measure the rendering speed.")
ap.add_argument("--out", default="docs/toyfaces_preview.png")
ap.add_argument("--size", type=int, default=80)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--bench", action="store_true", help="also print faces/s at 64 px")
args = ap.parse_args()
print(preview(args.out, size=args.size, seed=args.seed))
if args.bench:
    print(f"{benchmark(64):.0f} faces/s at 64 px")
