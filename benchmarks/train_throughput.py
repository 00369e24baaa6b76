"""Training throughput of pix2pix through the real code path (LightningModule + Trainer + data module).

Prints images/s, seconds/iteration and peak memory per configuration, with ratios against the fp32 eager row of
the same size/batch, and the reference-comparable row (unet_128, 128 px, batch 1, fp32, CPU, real aligned files)
against the reference implementation's seconds/iteration (`--ref-s-per-it`). Every configuration runs in its own
subprocess so peak memory is its own.

    python benchmarks/train_throughput.py                 # CPU rows (skips 256 px batch 16 unless --all)
    python benchmarks/train_throughput.py --device cuda   # GPU rows: fp32, bf16-mixed, channels_last, compile
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REFERENCE_S_PER_IT = 0.77  # reference pix2pix, unet_128 / 128 px / batch 1 on this 2-core CPU (issue statement)


def measure(spec: dict) -> dict:
    """Run one configuration in this process; return timings."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import Callback

    from translate.pix2pix import Pix2Pix

    torch.manual_seed(0)
    device = spec["device"]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    size, batch = spec["size"], spec["batch"]
    module = Pix2Pix(model=dict(netG=spec["netG"], channels_last=spec["channels_last"], use_dropout=True))
    if spec.get("compile"):
        module.net_g = torch.compile(module.net_g)
        module.net_d = torch.compile(module.net_d)

    if spec.get("files"):  # the real pipeline: aligned PNG files, resize_and_crop, flips, loader workers
        from datamodules import build_datamodule
        from datamodules.config import DataConfig
        from datamodules.synthetic import write_synthetic_dataset

        tmp = tempfile.mkdtemp()
        dcfg = DataConfig(kind="synthetic")
        dcfg.synthetic.size, dcfg.synthetic.n_train, dcfg.synthetic.n_val = 256, 64, 1
        write_synthetic_dataset(tmp, dcfg, layout="aligned")
        data = DataConfig(kind="aligned", root=tmp, load_size=int(size * 286 / 256), crop_size=size,
                          batch_size=batch, num_workers=spec.get("workers", 0))
        dm = build_datamodule(data)
        dm.setup("fit")
        loader = dm.train_dataloader()
    else:
        x = {"A": torch.rand(batch, 3, size, size) * 2 - 1, "B": torch.rand(batch, 3, size, size) * 2 - 1,
             "A_path": ["x"] * batch}
        loader = torch.utils.data.DataLoader([x] * 10_000, batch_size=None)

    warmup, steps = spec["warmup"], spec["steps"]
    times = []

    class Timer(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == warmup:
                if device == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                times.append(time.perf_counter())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == warmup + steps - 1:
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter())
                trainer.should_stop = True

    trainer = pl.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu", devices=1, precision=spec["precision"],
        max_epochs=1000, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[Timer()],
    )
    trainer.fit(module, train_dataloaders=loader)
    elapsed = times[1] - times[0]
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"s_per_it": elapsed / steps, "img_per_s": steps * batch / elapsed, "peak_mib": peak}


def rows(args) -> list:
    out = []
    if args.device == "cpu":
        out.append(dict(name="reference config: unet_128 128px b1 fp32 (files, 0 workers)", netG="unet_128", size=128,
                        batch=1, precision="32-true", channels_last=False, files=True, workers=0, ref=True))
        out.append(dict(name="reference config: unet_128 128px b1 fp32 (files, 1 worker)", netG="unet_128", size=128,
                        batch=1, precision="32-true", channels_last=False, files=True, workers=1, ref=True))
        out.append(dict(name="unet_128 128px b1 fp32 channels_last (files)", netG="unet_128", size=128, batch=1,
                        precision="32-true", channels_last=True, files=True, workers=0, ref=True))
    batches = [1, 16] if (args.all or args.device == "cuda") else [1]
    for b in batches:
        for precision in ("32-true", "bf16-mixed"):
            for cl in (False, True):
                out.append(dict(name=f"unet_256 256px b{b} {precision}{' channels_last' if cl else ''}",
                                netG="unet_256", size=256, batch=b, precision=precision, channels_last=cl))
        if args.device == "cuda":
            out.append(dict(name=f"unet_256 256px b{b} bf16-mixed channels_last compile", netG="unet_256", size=256,
                            batch=b, precision="bf16-mixed", channels_last=True, compile=True))
    for r in out:
        r.update(device=args.device, warmup=args.warmup, steps=args.steps)
        r.setdefault("files", False)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--all", action="store_true", help="also the slow 256 px batch-16 rows on CPU")
    p.add_argument("--quick", action="store_true", help="3 timed steps, 1 warm-up: a smoke run")
    p.add_argument("--ref-s-per-it", type=float, default=REFERENCE_S_PER_IT)
    p.add_argument("--only", default="", help="run only rows whose name contains this text")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one JSON spec and print its result
    args = p.parse_args()
    if args.one:
        print("RESULT " + json.dumps(measure(json.loads(args.one))))
        return
    if args.quick:
        args.steps, args.warmup = 3, 1
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit("--device cuda: no CUDA device here")
    results = []
    for spec in rows(args):
        if args.only and args.only not in spec["name"]:
            continue
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        r = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True,
                           env=env, cwd=ROOT)
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{spec['name']}: failed\n{r.stderr[-2000:]}")
            continue
        res = json.loads(line[7:])
        results.append((spec, res))
        print(f"  measured {spec['name']}: {res['s_per_it']:.3f} s/it", flush=True)

    print(f"\npix2pix training throughput ({args.device}, {args.steps} timed iterations after {args.warmup} warm-up)")
    print(f"{'configuration':62s} {'s/it':>8s} {'img/s':>8s} {'peak MiB':>9s} {'vs fp32':>8s} {'vs ref':>7s}")
    base = {}
    for spec, res in results:
        key = (spec["size"], spec["batch"], spec["files"])
        if spec["precision"] == "32-true" and not spec["channels_last"] and not spec.get("compile"):
            base.setdefault(key, res["img_per_s"])
        ratio = res["img_per_s"] / base[key] if key in base else float("nan")
        vs_ref = f"{args.ref_s_per_it / res['s_per_it']:6.2f}x" if spec.get("ref") else ""
        print(f"{spec['name']:62s} {res['s_per_it']:8.3f} {res['img_per_s']:8.2f} {res['peak_mib']:9.0f} "
              f"{ratio:7.2f}x {vs_ref:>7s}")
    if args.device == "cpu":
        print(f"\nvs ref = reference implementation's {args.ref_s_per_it} s/it divided by ours (target >= 1.5x)")


if __name__ == "__main__":
    main()
