"""`make demo`: train pix2pix on the embedded synthetic set, export it, translate the held-out images, score them.

Prints validation PSNR/SSIM of the exported translator beside two baselines (output = input, output = the mean
training target) and writes demo_out/grid.png (input | output | target). Extra arguments are config overrides,
e.g. `python scripts/demo.py trainer.max_epochs=2`.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datamodules import build_datamodule  # noqa: E402
from datamodules.io import list_images, read_image, write_image  # noqa: E402
from translate import console  # noqa: E402
from translate.train import runner  # noqa: E402
from translate.train.config import load_config  # noqa: E402
from translate.deploy.inference import load_translator  # noqa: E402
from translate.deploy.predict import predict_paths  # noqa: E402
from translate.tools.scoring import score_pairs  # noqa: E402
from translate.methods.images import image_grid  # noqa: E402
from torchvision.utils import save_image  # noqa: E402

OUT = ROOT / "demo_out"


def to_uint8(t: torch.Tensor):
    return ((t.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def free_cores() -> tuple:
    """(threads to use, cores, 1-minute load): the cores that other work leaves free, at least one. Two threads
    fighting over two busy cores spend their time waiting on each other (make demo took 57 minutes beside other jobs
    instead of about 4); one thread degrades gracefully."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, int(cores - load + 0.5))), cores, load


def main(overrides):
    console.setup()
    if "OMP_NUM_THREADS" not in os.environ:  # the user's choice wins
        threads, cores, load = free_cores()
        torch.set_num_threads(threads)
        print(f"demo: {threads} torch thread(s) ({cores} cores, load {load:.1f}; set OMP_NUM_THREADS to choose); "
              f"about 4 minutes on a quiet 2-core machine")
    t0 = time.time()
    cfg = load_config([ROOT / "configs/pix2pix/demo.yaml"], overrides)
    trainer, module = runner.fit(cfg, overwrite=True)  # the demo reruns from scratch
    ckpt = trainer.checkpoint_callback.best_model_path or trainer.checkpoint_callback.last_model_path
    t_train = time.time() - t0
    bundle = runner.export(ckpt, OUT / "bundle", overwrite=True)

    # the held-out split as image files, translated through the exported bundle like a user would
    dm = build_datamodule(cfg.data)
    dm.setup("validate")
    src, ref = OUT / "heldout" / "A", OUT / "heldout" / "B"
    src.mkdir(parents=True, exist_ok=True)
    ref.mkdir(parents=True, exist_ok=True)
    i = 0
    for batch in dm.val_dataloader():
        for a, b in zip(batch["A"], batch["B"]):
            write_image(src / f"{i:04d}.png", to_uint8(a))
            write_image(ref / f"{i:04d}.png", to_uint8(b))
            i += 1
    pred = OUT / "translated"
    predict_paths(load_translator(bundle), src, pred, batch_size=16, progress=False)

    dm.setup("fit")
    mean_target = torch.zeros(3, cfg.data.synthetic.size, cfg.data.synthetic.size)
    n = 0
    for batch in dm.train_dataloader():
        mean_target += batch["B"].sum(0)
        n += batch["B"].shape[0]
    mean_target /= n

    load = lambda folder: [torch.from_numpy(read_image(p, 3)).permute(2, 0, 1).float() / 127.5 - 1 for p in list_images(folder)]  # noqa: E731
    inputs, outputs, targets = load(src), load(pred), load(ref)
    rows = {
        "pix2pix (exported bundle)": score_pairs(outputs, targets),
        "baseline: output = input": score_pairs(inputs, targets),
        "baseline: mean training target": score_pairs([mean_target] * len(targets), targets),
    }
    save_image(image_grid([torch.stack(inputs), torch.stack(outputs), torch.stack(targets)], n=8), OUT / "grid.png")

    print(f"\nheld-out synthetic pairs: {len(targets)}   training time: {t_train:.0f} s   total: {time.time() - t0:.0f} s")
    print(f"{'':34s} {'PSNR (dB)':>10s} {'SSIM':>8s}")
    for name, m in rows.items():
        print(f"{name:34s} {m['psnr']:10.2f} {m['ssim']:8.3f}")
    print(f"\ngrid (input | output | target): {OUT / 'grid.png'}\nbundle: {bundle}\nrun: {cfg.run_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
