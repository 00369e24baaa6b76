"""Training throughput through the real code path: a method's LightningModule driven by a pytorch_lightning.Trainer.

Each configuration ("case") runs in its own subprocess, so its peak memory is its own. A Callback times the steps
after the warm-up with time.perf_counter (on CUDA it synchronises only at the two measurement boundaries). Printed
per case: seconds/iteration (mean over the timed steps and, on CPU, the median step), images/s, peak memory (CPU:
peak RSS minus the RSS just before `fit`, main process only; CUDA: torch.cuda.max_memory_allocated over the timed
steps), the img/s ratio against the fp32 eager case of the same shape, and for the reference-comparable cases
(unet_128, 128 px, batch 1, fp32) the reference implementation's s/it divided by ours (`--ref-s-per-it`).

    python benchmarks/train_throughput.py                    # CPU cases, slow ones skipped (~6 min on 2 cores)
    python benchmarks/train_throughput.py --configs 'ref128*' # only the reference-comparable cases
    python benchmarks/train_throughput.py --device cuda      # GPU cases: fp32/bf16-mixed, channels_last, compile
    python benchmarks/train_throughput.py --quick            # smoke run: 2 cases, 1 warm-up + 3 timed steps
    python benchmarks/train_throughput.py --list             # the case names

Methods plug in through RUNNERS (method -> runner); a runner builds the module and the training loader for a Case
and hands them to `time_fit`. Results and how they were taken: benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix, train.py at upstream commit 2a7afba, 2025-08)
# training pix2pix with --netG unet_128 --load_size 128 --crop_size 128 --batch_size 1 on this project's 2-core
# CPU: median wall time per iteration (see benchmarks/README.md for the measurement).
REFERENCE_S_PER_IT = 0.45
FILES_N_PAIRS = 64  # aligned A|B pairs written for the `files` cases (256 px per side, like CMP Facades)
FILES_SIDE = 256
PRECISION_NAMES = {"32-true": "fp32", "bf16-mixed": "bf16-mixed", "16-mixed": "fp16-mixed"}


@dataclass
class Case:
    """One benchmarked configuration."""

    name: str  # short id used by --configs
    method: str = "pix2pix"  # a key of RUNNERS
    netG: str = "unet_256"  # generator architecture
    size: int = 256  # training crop side in pixels
    batch: int = 1  # images per step
    precision: str = "32-true"  # Lightning precision: 32-true | bf16-mixed | 16-mixed
    channels_last: bool = False  # model.channels_last
    compile: bool = False  # torch.compile the nets
    data: str = "random"  # random: in-memory batches | files: aligned PNGs through the data module (real pipeline)
    workers: int = 0  # loader worker processes (`files` only)
    threads: int = 0  # torch intra-op threads (0: torch's default)
    ref: bool = False  # comparable with the reference implementation's s/it
    slow: bool = False  # skipped unless --no-skip-slow (and then given fewer steps)
    extra: Dict[str, object] = field(default_factory=dict)  # method-specific model options

    def describe(self) -> str:
        bits = [self.netG, f"{self.size}px", f"b{self.batch}", PRECISION_NAMES.get(self.precision, self.precision)]
        bits += ["channels_last"] if self.channels_last else []
        bits += ["compile"] if self.compile else []
        bits += [f"{self.threads} torch thread{'s' * (self.threads > 1)}"] if self.threads else []
        bits += [f"PNG files, {self.workers} workers" if self.data == "files" else "in-memory"]
        return f"{self.method} " + " ".join(bits)


# ---- timing --------------------------------------------------------------------------------------------------------
def _rss_mib() -> float:
    """Resident set size of this process now (Linux /proc, else psutil, else 0)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        try:
            import psutil

            return psutil.Process().memory_info().rss / 2**20
        except ImportError:
            return 0.0


def _peak_rss_mib() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def time_fit(module, loader, device: str, precision: str, warmup: int, steps: int, batch: int) -> Dict[str, float]:
    """Fit `module` on `loader` with a Trainer; time `steps` training steps after `warmup` steps."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import Callback

    stamps: List[float] = []
    cuda = device == "cuda"

    class StepTimer(Callback):
        """Counts batches across epochs; stamps the start of step `warmup` and the end of the last timed step."""

        seen = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if self.seen == warmup:
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                stamps.append(time.perf_counter())
            elif warmup < self.seen < warmup + steps and not cuda:  # CPU steps are synchronous: per-step times
                stamps.append(time.perf_counter())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.seen += 1
            if self.seen == warmup + steps:
                if cuda:
                    torch.cuda.synchronize()
                stamps.append(time.perf_counter())
                trainer.should_stop = True

    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=1, precision=precision, max_epochs=-1, limit_val_batches=0,
        num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[StepTimer()],
    )
    rss0 = _rss_mib()
    trainer.fit(module, train_dataloaders=loader)
    elapsed = stamps[-1] - stamps[0]
    per_step = [b - a for a, b in zip(stamps, stamps[1:])]
    return {
        "s_per_it": elapsed / steps,
        "median_s_per_it": statistics.median(per_step) if not cuda else float("nan"),
        "img_per_s": steps * batch / elapsed,
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else _peak_rss_mib() - rss0,
        "threads": torch.get_num_threads(),
    }


# ---- runners: method -> (build module + loader, then time_fit) ----------------------------------------------------
def _random_loader(case: Case, channels=(3, 3)):
    import torch

    torch.manual_seed(0)
    batch = {"A": torch.rand(case.batch, channels[0], case.size, case.size) * 2 - 1,
             "B": torch.rand(case.batch, channels[1], case.size, case.size) * 2 - 1, "A_path": ["random"] * case.batch}
    return torch.utils.data.DataLoader([batch] * 100_000, batch_size=None)  # the same batch, no collation cost


def _aligned_loader(case: Case, root: str):
    from datamodules import build_datamodule
    from datamodules.config import DataConfig

    cfg = DataConfig(kind="aligned", root=root, load_size=case.size, crop_size=case.size, batch_size=case.batch,
                     num_workers=case.workers)  # as the reference run: resize to load_size, crop, random flip
    dm = build_datamodule(cfg)
    dm.setup("fit")
    return dm.train_dataloader()


def run_pix2pix(case: Case, device: str, warmup: int, steps: int, data_root: Optional[str]) -> Dict[str, float]:
    import torch

    from translate.pix2pix import Pix2Pix

    torch.manual_seed(0)
    module = Pix2Pix(model=dict(netG=case.netG, channels_last=case.channels_last, use_dropout=True, **case.extra))
    if case.compile:
        module.net_g = torch.compile(module.net_g)
        module.net_d = torch.compile(module.net_d)
    loader = _aligned_loader(case, data_root) if case.data == "files" else _random_loader(case)
    return time_fit(module, loader, device, case.precision, warmup, steps, case.batch)


RUNNERS: Dict[str, Callable[..., Dict[str, float]]] = {"pix2pix": run_pix2pix}


# ---- the cases -------------------------------------------------------------------------------------------------------
def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cases(device: str) -> List[Case]:
    out: List[Case] = []
    ref = dict(netG="unet_128", size=128, batch=1, ref=True)
    if device == "cpu":
        out += [
            Case("ref128", **ref),
            Case("ref128-cl", channels_last=True, **ref),
            Case("ref128-1thread", threads=1, **ref),
            Case("ref128-files-w0", data="files", workers=0, **ref),
            Case("ref128-files-w1", data="files", workers=1, **ref),
        ]
    bf16_slow = device == "cpu" and not _cpu_has_native_bf16()
    for b in (1, 16):
        for precision, tag in (("32-true", "fp32"), ("bf16-mixed", "bf16")):
            for cl in (False, True):
                slow = device == "cpu" and (b > 1 or (precision == "bf16-mixed" and bf16_slow))
                out.append(Case(f"256-b{b}-{tag}{'-cl' if cl else ''}", batch=b, precision=precision, channels_last=cl,
                                slow=slow))
        if device == "cuda":
            out.append(Case(f"256-b{b}-bf16-cl-compile", batch=b, precision="bf16-mixed", channels_last=True,
                            compile=True))
    return out


def select(all_cases: List[Case], patterns: str, skip_slow: bool, quick: bool) -> List[Case]:
    if patterns:
        pats = [p.strip() for p in patterns.split(",") if p.strip()]
        chosen = [c for c in all_cases if any(fnmatch.fnmatch(c.name, p) for p in pats)]
        if not chosen:
            raise SystemExit(f"--configs {patterns!r}: matches none of {[c.name for c in all_cases]}")
        return chosen
    if quick:
        return [c for c in all_cases if c.name in ("ref128", "256-b1-fp32")]
    return [c for c in all_cases if not (skip_slow and c.slow)]


def write_files(root: str) -> None:
    """Aligned A|B PNGs of the procedural facades, 256 px per side."""
    from datamodules.config import DataConfig
    from datamodules.synthetic import write_synthetic_dataset

    cfg = DataConfig(kind="synthetic")
    cfg.synthetic.size, cfg.synthetic.n_train, cfg.synthetic.n_val = FILES_SIDE, FILES_N_PAIRS, 1
    write_synthetic_dataset(root, cfg, layout="aligned")


# ---- driver ----------------------------------------------------------------------------------------------------------
def run_one(spec: dict) -> None:
    case = Case(**spec["case"])
    if case.threads:
        import torch

        torch.set_num_threads(case.threads)
    res = RUNNERS[case.method](case, spec["device"], spec["warmup"], spec["steps"], spec.get("data_root"))
    print("RESULT " + json.dumps(res))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--configs", default="", help="comma-separated case names or shell patterns (see --list)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per case (default: 20; 3 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 5; 1 with --quick)")
    p.add_argument("--skip-slow", action=argparse.BooleanOptionalAction, default=None,
                   help="skip the cases marked slow: on by default on CPU (256 px batch 16; bf16 without native "
                        "bf16 in the CPU), off on CUDA; --no-skip-slow runs them with --slow-steps")
    p.add_argument("--slow-steps", type=int, default=2, help="timed steps (after 1 warm-up) for the slow cases")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds after which a case is abandoned")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 cases, 1 warm-up + 3 timed steps")
    p.add_argument("--ref-s-per-it", type=float, default=REFERENCE_S_PER_IT,
                   help=f"the reference implementation's s/it on the ref128 configuration (default {REFERENCE_S_PER_IT}, "
                        "measured on this project's 2-core CPU)")
    p.add_argument("--list", action="store_true", help="print the case names for --device and exit")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one JSON spec in this process
    args = p.parse_args()
    if args.one:
        run_one(json.loads(args.one))
        return
    all_cases = cases(args.device)
    if args.list:
        for c in all_cases:
            print(f"{c.name:28s} {c.describe()}{'  [slow]' if c.slow else ''}")
        return
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit("--device cuda: torch sees no CUDA device here")
    skip_slow = args.device == "cpu" if args.skip_slow is None else args.skip_slow
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    steps = args.steps if args.steps is not None else (3 if args.quick else 20)
    chosen = select(all_cases, args.configs, skip_slow, args.quick)

    data_root = tempfile.mkdtemp(prefix="bench_data_") if any(c.data == "files" for c in chosen) else None
    results = []
    try:
        if data_root:
            write_files(data_root)
        for case in chosen:
            w, s = (1, args.slow_steps) if case.slow else (warmup, steps)
            spec = {"case": asdict(case), "device": args.device, "warmup": w, "steps": s, "data_root": data_root}
            env = dict(os.environ, PYTHONWARNINGS="ignore")
            t = time.perf_counter()
            try:
                r = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True,
                                   text=True, env=env, cwd=ROOT, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"  {case.name}: abandoned after {args.timeout:.0f} s", flush=True)
                continue
            line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(f"  {case.name}: failed (exit {r.returncode})\n{r.stderr[-3000:]}", flush=True)
                continue
            res = dict(json.loads(line[len("RESULT "):]), warmup=w, steps=s)
            results.append((case, res))
            print(f"  {case.name}: {res['s_per_it']:.3f} s/it ({time.perf_counter() - t:.0f} s with start-up)",
                  flush=True)
    finally:
        if data_root:
            shutil.rmtree(data_root, ignore_errors=True)
    report(results, args)


def report(results, args) -> None:
    import torch

    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {os.cpu_count()} cores"
    print(f"\ntraining throughput on {where}, torch {torch.__version__}; s/it = mean over the timed steps"
          f"{', med = median step' if args.device == 'cpu' else ''}")
    mem = "peak MiB" if args.device == "cuda" else "+RSS MiB"
    print(f"{'case':24s} {'configuration':58s} {'s/it':>7s} {'med':>7s} {'img/s':>7s} {mem:>9s} "
          f"{'vs fp32':>7s} {'vs ref':>7s}")
    base: Dict[tuple, float] = {}
    for case, res in results:
        key = (case.method, case.netG, case.size, case.batch, case.data, case.workers, case.threads)
        if case.precision == "32-true" and not case.channels_last and not case.compile:
            base.setdefault(key, res["img_per_s"])
        vs_fp32 = f"{res['img_per_s'] / base[key]:6.2f}x" if key in base else "-"
        med = res["median_s_per_it"]
        vs_ref = ""
        if case.ref:
            ours = med if med == med else res["s_per_it"]  # median where there is one (CPU)
            vs_ref = f"{args.ref_s_per_it / ours:6.2f}x"
        print(f"{case.name:24s} {case.describe():58s} {res['s_per_it']:7.3f} "
              f"{(f'{med:7.3f}' if med == med else '      -')} {res['img_per_s']:7.2f} {res['peak_mib']:9.0f} "
              f"{vs_fp32:>7s} {vs_ref:>7s}")
    if any(c.ref for c, _ in results):
        print(f"vs ref: the reference implementation's {args.ref_s_per_it} s/it on unet_128 / 128 px / batch 1 / fp32 "
              "divided by ours (median step on CPU); target >= 1.5x")
    if args.json:
        Path(args.json).write_text(json.dumps([{"case": asdict(c), **r} for c, r in results], indent=1))


if __name__ == "__main__":
    main()
