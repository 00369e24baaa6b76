"""e4e against pSp on the toy faces: two encoders trained for the same CPU time on the same prior, then compared.

    python benchmarks/e4e.py --prior runs/prior_toyfaces64/prior --minutes 8 --run-dir runs/e4e_bench
    python benchmarks/e4e.py --ckpt-psp runs/a/checkpoints/last.ckpt --ckpt-e4e runs/b/checkpoints/last.ckpt

Training: `cli.py fit` of configs/psp/toyfaces_encode.yaml (pSp: L2 + W-norm) and configs/psp/toyfaces_e4e.yaml (e4e:
progressive deltas, delta regulariser, latent discriminator), both on `--prior`, side by side in two processes on one
thread each (so that both see the same machine), each stopped by `trainer.max_time`; `--e4e-overrides` adjusts the
e4e config (e.g. its progressive schedule to the budget).

Columns, on `--faces` held-out toy faces (the test split, seed 2) through the trained nets (constant noise):
- reconstruction: MSE and PSNR of the output to the input;
- spread: the mean over rows i >= 1 of |w_i - w_0|, how far the codes leave one w (e4e's point: small, editable);
- editability (with benchmarks/editability.py, the InterFaceGAN edit scorer): per encoder, an InterFaceGAN boundary of
  `--attribute` fitted to its own inverted faces; an attribute model trained on toy faces with their truth labels
  scores how much an edit changes the target attribute ("target") and how little the others ("others").
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

CONFIGS = {"pSp": "configs/psp/toyfaces_encode.yaml", "e4e": "configs/psp/toyfaces_e4e.yaml"}
FACES_SEED = 2  # held-out faces: neither the prior's (0) nor the encoders' (1) training faces


def train(prior: str, minutes: float, run_dir: Path, e4e_overrides: List[str]) -> Dict[str, Path]:
    """Both encoders trained side by side for `minutes` each; their last checkpoints."""
    hms = time.strftime("%H:%M:%S", time.gmtime(int(minutes * 60)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    procs, logs = {}, {}
    for name, config in CONFIGS.items():
        out = run_dir / name
        extra = e4e_overrides if name == "e4e" else []
        cmd = [sys.executable, str(ROOT / "cli.py"), "fit", "--config", config, f"model.prior={prior}",
               f"run_dir={out}", f"trainer.max_time=00:{hms}", "trainer.max_epochs=1000", *extra]
        print("$ " + " ".join(cmd[1:]), flush=True)
        out.mkdir(parents=True, exist_ok=True)
        logs[name] = open(out.parent / f"{name}.log", "w")
        procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=logs[name], stderr=subprocess.STDOUT)
    for name, p in procs.items():
        if p.wait() != 0:
            raise SystemExit(f"training {name} failed: see {run_dir / (name + '.log')}")
        logs[name].close()
    return {name: run_dir / name / "checkpoints" / "last.ckpt" for name in CONFIGS}


def held_out_faces(n: int, size: int) -> torch.Tensor:
    from datamodules.toyfaces import ToyFaces

    faces = ToyFaces(n, size, seed=FACES_SEED, split="test")
    return torch.from_numpy(faces.arrays()["image"]).permute(0, 3, 1, 2).float() / 127.5 - 1  # (n, 3, size, size)


@torch.no_grad()
def reconstruction(net, images: torch.Tensor) -> Dict[str, float]:
    codes = torch.cat([net.encode(images[i:i + 16]) for i in range(0, len(images), 16)])
    out = torch.cat([net.decode(codes[i:i + 16]) for i in range(0, len(codes), 16)])
    mse = (out - images).square().flatten(1).mean(1)  # per image, images in [-1, 1]
    psnr = 10 * torch.log10(4.0 / mse)  # peak-to-peak 2
    spread = (codes[:, 1:] - codes[:, :1]).norm(dim=2).mean()
    return {"mse": float(mse.mean()), "psnr": float(psnr.mean()), "spread": float(spread)}


def steps_of(ckpt: Path) -> int:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    return int(state.get("psp_progress", {}).get("n_steps", 0))


def load_trained(ckpt: Path):
    """The deterministic net of a training checkpoint, an e4e encoder at the stage its training reached (a bundle,
    like the reference's loaded models, adds every delta: trained ones only once the run reached the last stage)."""
    from translate.train import runner

    _, module = runner.load_run(ckpt)
    module.n_steps = steps_of(ckpt)
    module.set_stage()
    return module.inference_net()


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prior", help="the toy prior folder both encoders train on (to train them here)")
    p.add_argument("--minutes", type=float, default=8.0, help="training time of each encoder")
    p.add_argument("--run-dir", default="runs/e4e_bench")
    p.add_argument("--e4e-overrides", nargs="*", default=[], help="config overrides of the e4e run")
    p.add_argument("--ckpt-psp", help="an already trained pSp checkpoint (instead of training)")
    p.add_argument("--ckpt-e4e", help="an already trained e4e checkpoint (instead of training)")
    p.add_argument("--faces", type=int, default=64, help="held-out faces for reconstruction")
    p.add_argument("--attribute", default="yaw", help="the edited attribute (editability)")
    p.add_argument("--edit-faces", type=int, default=32, help="held-out faces edited")
    p.add_argument("--boundary-faces", type=int, default=300, help="inverted faces each boundary is fitted to")
    p.add_argument("--classifier", help="attribute model .safetensors of benchmarks/editability.py (trained if "
                                        "missing)")
    p.add_argument("--no-editability", action="store_true")
    args = p.parse_args(argv)

    if args.ckpt_psp and args.ckpt_e4e:
        ckpts = {"pSp": Path(args.ckpt_psp), "e4e": Path(args.ckpt_e4e)}
    elif args.prior:
        ckpts = train(args.prior, args.minutes, Path(args.run_dir), args.e4e_overrides)
    else:
        p.error("give --prior (train both encoders here) or both --ckpt-psp and --ckpt-e4e")

    from translate.tools.invert import output_size

    nets = {name: load_trained(c) for name, c in ckpts.items()}
    images = held_out_faces(args.faces, output_size(nets["pSp"]))
    print(f"\n{args.faces} held-out toy faces (seed {FACES_SEED}, test split), {torch.get_num_threads()} threads")
    print("| encoder | minibatches | deltas in use | MSE | PSNR (dB) | spread mean \\|w_i - w_0\\| |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, net in nets.items():
        r = reconstruction(net, images)
        stage = getattr(net.encoder, "progressive_stage", None)
        print(f"| {name} | {steps_of(ckpts[name])} | {'-' if stage is None else stage} | {r['mse']:.4f} | "
              f"{r['psnr']:.2f} | {r['spread']:.3f} |", flush=True)

    if args.no_editability:
        return 0
    try:
        import editability  # benchmarks/editability.py: the attribute model and the InterFaceGAN edit scorer
    except ImportError as e:
        print(f"\neditability: skipped ({e}; it needs benchmarks/editability.py and translate.tools.directions)")
        return 0
    if args.classifier and Path(args.classifier).is_file():
        model = editability.load_attribute_model(args.classifier)
    else:
        model = editability.train_attribute_model()
        if args.classifier:
            editability.save_attribute_model(model, args.classifier)
    acc = editability.attribute_accuracy(model)
    print("\nattribute model on held-out faces (R^2; accuracy for binary ones): "
          + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    print(f"InterFaceGAN edit of '{args.attribute}' (change per unit strength, in stds of each attribute)")
    rows = editability.editability_table(model, nets, args.attribute, args.edit_faces, args.boundary_faces)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
