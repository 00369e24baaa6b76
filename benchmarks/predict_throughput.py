"""CPU inference throughput of `translate predict` against the reference code's test.py, on the same images and
weights.

For a pix2pix unet_256 and a CycleGAN resnet_9blocks generator with random weights, saved in the reference's
`latest_net_G.pth` layout and imported with `translate import --from junyanz`, over a folder of generated 256x256
images, each row runs in its own process, as a user would start it:

- `predict (default)`: `translate predict` as it is, with its defaults (onnxruntime, one image per core);
- `predict --cpu-workers 1`: onnxruntime, one session using every core on one image;
- `predict --backend eager`: eager PyTorch;
- `predict int8 bundle`: `translate predict` on the bundle `translate quantize` made, calibrated on these images;
- `reference-equivalent loop`: `benchmarks/reference_loop.py`, the reference test.py's work per image written by
  us (batch 1, eager PyTorch, default threads, the same latest_net_G.pth; PIL load -> resize -> normalise -> net ->
  PNG), the baseline when the reference itself is not given;
- `reference test.py` (with --reference-repo): the reference's `test.py --model test` on the same weights.

Printed per row: images/s over the whole command (start-up and model loading included: the time a user waits),
peak RSS of the process, and the ratio of images/s to the reference's test.py (or, without it, to the
reference-equivalent loop). Rows of
one net alternate over --repeats rounds; the best round of each row counts (the machine is shared: say its load).

    python benchmarks/predict_throughput.py                                  # ours only, 200 images
    python benchmarks/predict_throughput.py --reference-repo /work/ref_junyanz --count 40

The reference's test.py needs `dominate` (its HTML page) and, in 2025 versions, an importable `wandb`: install them,
or put a folder with them on PYTHONPATH. Every row runs with CUDA_VISIBLE_DEVICES empty. Each row's outputs are
compared with the default predict's (largest difference in 1/255 steps). Results: benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NETS = {"unet_256": "batch", "resnet_9blocks": "instance"}  # netG -> the reference's --norm for it
SIDE = 256


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    """`count` smooth random RGB images of SIDE x SIDE as PNG (noise upsampled, so they compress like photos)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((SIDE, SIDE), Image.BICUBIC).save(folder / f"img{i:04d}.png")


def make_weights(netG: str, path: Path, seed: int = 0) -> None:
    """Random weights of the reference's generator `netG`, in its latest_net_G.pth layout (the same keys)."""
    from nets import build_generator

    torch.manual_seed(seed)
    net = build_generator(name=netG, input_nc=3, output_nc=3, norm=NETS[netG])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)


def timed(cmd: List[str], cwd: Path, env: Dict[str, str]) -> Tuple[float, float]:
    """Run `cmd` -> (seconds, peak RSS of the process in MiB); a failure stops the benchmark with its output."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{out.decode(errors='replace')[-3000:]}")
    return seconds, usage.ru_maxrss / 1024


def rows_for(netG: str, work: Path, images: Path, ref: Optional[Path]) -> Dict[str, Tuple[List[str], Path]]:
    """Row name -> (command, working folder) for one net; every command writes into a fresh folder of `work`."""
    py = sys.executable
    bundle = work / netG / "bundle"
    predict = [py, str(ROOT / "cli.py"), "predict", "--model", str(bundle), "--input", str(images)]
    rows = {"predict (default)": (predict + ["--output", str(work / netG / "out_default")], ROOT),
            "predict --cpu-workers 1": (predict + ["--cpu-workers", "1", "--output", str(work / netG / "out_w1")],
                                        ROOT),
            "predict --backend eager": (predict + ["--backend", "eager", "--output", str(work / netG / "out_eager")],
                                        ROOT),
            "predict int8 bundle": ([py, str(ROOT / "cli.py"), "predict", "--model", str(work / netG / "int8"),
                                     "--input", str(images), "--output", str(work / netG / "out_int8")], ROOT)}
    rows["reference-equivalent loop"] = ([py, str(ROOT / "benchmarks" / "reference_loop.py"), "--weights",
                                          str(work / netG / "ckpt" / "bench" / "latest_net_G.pth"), "--netG", netG,
                                          "--norm", NETS[netG], "--input", str(images), "--output",
                                          str(work / netG / "out_refloop"), "--size", str(SIDE)], ROOT)
    if ref is not None:
        count = len(list(images.iterdir()))
        # versions before the 2025 DDP rewrite take --gpu_ids (-1: the CPU); later ones pick the device themselves
        # (CUDA_VISIBLE_DEVICES is empty for every row)
        gpu = ["--gpu_ids", "-1"] if "gpu_ids" in (ref / "options" / "base_options.py").read_text() else []
        rows["reference test.py"] = ([py, "test.py", "--dataroot", str(images), "--name", "bench", "--model", "test",
                                      "--netG", netG, "--norm", NETS[netG], "--no_dropout", "--checkpoints_dir",
                                      str(work / netG / "ckpt"), "--results_dir", str(work / netG / "ref_out"),
                                      "--num_test", str(count), "--load_size", str(SIDE), "--crop_size", str(SIDE),
                                      *gpu], ref)
    return rows


def output_dir(cmd: List[str]) -> Path:
    """The folder a row's command writes into (its --output, or the reference's --results_dir)."""
    return Path(next(value for flag, value in zip(cmd, cmd[1:]) if flag in ("--output", "--results_dir")))


def agreement(rows: Dict[str, Tuple[List[str], Path]], ran: Dict[str, Tuple[float, float]]) -> None:
    """Print the largest difference, in 1/255 steps over every image, of each row's outputs to the default
    predict's (the outputs of each row's last round are still there)."""
    if "predict (default)" not in ran:
        return
    default = output_dir(rows["predict (default)"][0])
    for name in ran:
        if name == "predict (default)":
            continue
        folder = output_dir(rows[name][0])
        if name == "reference test.py":  # <results_dir>/<name>/test_<epoch>/images/<stem>_fake.png
            images = next(folder.glob("*/*/images"), None)
            pairs = [] if images is None else [(f, default / (f.name[:-len("_fake.png")] + ".png"))
                                               for f in sorted(images.glob("*_fake.png"))]
        else:
            pairs = [(f, default / f.name) for f in sorted(folder.glob("*.png"))]
        report_difference(name, pairs)


def report_difference(name: str, pairs: List[Tuple[Path, Path]]) -> None:
    worst = max((int(np.abs(np.asarray(Image.open(a).convert("RGB"), np.int16)
                            - np.asarray(Image.open(b).convert("RGB"), np.int16)).max()) for a, b in pairs),
                default=None)
    print(f"    {name}: {len(pairs)} outputs, largest difference to the default predict's: {worst}/255", flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=200, help="images of 256x256 (default 200)")
    ap.add_argument("--nets", default=",".join(NETS), help=f"comma-separated, of {list(NETS)}")
    ap.add_argument("--reference-repo", type=Path, default=None,
                    help="checkout of junyanz/pytorch-CycleGAN-and-pix2pix: also time its test.py")
    ap.add_argument("--skip", default="", help="comma-separated row names not to run, e.g. "
                                               "'predict --cpu-workers 1'")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of all rows of a net (best counts)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="work in this folder and keep it (default: a temporary one)")
    args = ap.parse_args(argv)
    nets = [n for n in args.nets.split(",") if n]
    unknown = [n for n in nets if n not in NETS]
    if unknown:
        ap.error(f"--nets: unknown {unknown}; choose from {list(NETS)}")
    if args.reference_repo is not None and not (args.reference_repo / "test.py").is_file():
        ap.error(f"--reference-repo: no test.py in {args.reference_repo}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="predict_throughput_"))
    # a CPU benchmark: no row sees a GPU; the reference's own imports (dominate, wandb) come from the caller's
    # PYTHONPATH, after the project
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    images = work / "images"
    if not images.is_dir():
        make_images(images, args.count)
    print(f"{args.count} images of {SIDE}x{SIDE}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    table = []
    try:
        for netG in nets:
            weights = work / netG / "ckpt" / "bench" / "latest_net_G.pth"
            make_weights(netG, weights)
            timed([sys.executable, str(ROOT / "cli.py"), "import", "--from", "junyanz", "--weights", str(weights),
                   "--out", str(work / netG / "bundle"), "--overwrite"], ROOT, env)
            quantize = [sys.executable, str(ROOT / "cli.py"), "quantize", "--model", str(work / netG / "bundle"),
                        "--calibration", str(images), "--out", str(work / netG / "int8"), "--overwrite"]
            timed(quantize, ROOT, env)
            q = json.loads((work / netG / "int8" / "translator.json").read_text())["quantization"]
            print(f"  {netG}: int8 PSNR vs fp32 {q['calibration_psnr_db']} dB (calibration), "
                  f"{q['held_out_psnr_db']} dB (held out)", flush=True)
            rows = rows_for(netG, work, images, args.reference_repo)
            skip = {name.strip() for name in args.skip.split(",") if name.strip()}
            if skip - set(rows):
                raise SystemExit(f"--skip: unknown rows {sorted(skip - set(rows))}; the rows: {list(rows)}")
            rows = {name: row for name, row in rows.items() if name not in skip}
            best: Dict[str, Tuple[float, float]] = {}
            for _ in range(args.repeats):
                for name, (cmd, cwd) in rows.items():
                    shutil.rmtree(output_dir(cmd), ignore_errors=True)  # this row's own folder, fresh each round
                    seconds, mib = timed(cmd, cwd, env)
                    print(f"  {netG:15s} {name:26s} {seconds:7.1f} s  {mib:6.0f} MiB", flush=True)
                    if name not in best or seconds < best[name][0]:
                        best[name] = (seconds, mib)
            agreement(rows, best)
            base_name = "reference test.py" if "reference test.py" in best else "reference-equivalent loop"
            base = args.count / best[base_name][0]
            for name, (seconds, mib) in best.items():
                table.append((netG, name, args.count / seconds, mib, args.count / seconds / base, base_name))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n| net | command | images/s | peak RSS (MiB) | vs {table[0][5] if table else 'baseline'} |")
    print("|---|---|---:|---:|---:|")
    for netG, name, ips, mib, ratio, _ in table:
        print(f"| {netG} | {name} | {ips:.3f} | {mib:.0f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
