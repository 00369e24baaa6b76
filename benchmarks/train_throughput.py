"""Training throughput through the real code path: a method's LightningModule driven by a pytorch_lightning.Trainer.

Each configuration ("case") runs in its own subprocess, so its peak memory is its own. A Callback times the steps
after the warm-up with time.perf_counter (on CUDA it synchronises only at the two measurement boundaries). Printed
per case: seconds/iteration (mean over the timed steps and, on CPU, the median step), images/s, peak memory (CPU:
peak RSS minus the RSS just before `fit`, main process only; CUDA: torch.cuda.max_memory_allocated over the timed
steps), the img/s ratio against the fp32 eager case of the same shape, and for the reference-comparable cases
(unet_128, 128 px, batch 1, fp32) the reference implementation's s/it divided by ours (`--ref-s-per-it`, or with
`--reference-repo` the reference's own train.py timed on the same data, alternating with ours: REFERENCE_CASES).

    python benchmarks/train_throughput.py                    # CPU cases, slow ones skipped (~6 min on 2 cores)
    python benchmarks/train_throughput.py --configs 'ref128*' # only the reference-comparable cases
    python benchmarks/train_throughput.py --device cuda      # GPU cases: fp32/bf16-mixed, channels_last, compile
    python benchmarks/train_throughput.py --quick            # smoke run: 2 cases, 1 warm-up + 3 timed steps
    python benchmarks/train_throughput.py --list             # the case names
    python benchmarks/train_throughput.py --configs 'ref128*' --reference-repo ~/pytorch-CycleGAN-and-pix2pix
                                               # also time the reference's train.py on the same data, interleaved

Methods plug in through RUNNERS (method -> runner); a runner builds the module and the training loader for a Case
and hands them to `time_fit`. Results and how they were taken: benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
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

# No typed-in figure for the reference: `vs ref` is shown only when the reference was timed here (--reference-repo,
# alternated with ours on the same data) or a figure is passed explicitly with --ref-s-per-it.
REFERENCE_S_PER_IT = None
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

    from translate.methods.pix2pix import Pix2Pix, Pix2PixConfig

    torch.manual_seed(0)
    module = Pix2Pix(model=Pix2PixConfig(netG=case.netG, channels_last=case.channels_last, use_dropout=True,
                                         **case.extra))
    if case.compile:
        module.net_g = torch.compile(module.net_g)
        module.net_d = torch.compile(module.net_d)
    loader = _aligned_loader(case, data_root) if case.data == "files" else _random_loader(case)
    return time_fit(module, loader, device, case.precision, warmup, steps, case.batch)


def run_cyclegan(case: Case, device: str, warmup: int, steps: int, data_root: Optional[str]) -> Dict[str, float]:
    import torch

    from translate.methods.cyclegan import CycleGAN, CycleGANConfig

    torch.manual_seed(0)
    module = CycleGAN(model=CycleGANConfig(netG=case.netG, channels_last=case.channels_last, **case.extra))
    if case.compile:
        for name in ("net_g_a", "net_g_b", "net_d_a", "net_d_b"):
            setattr(module, name, torch.compile(getattr(module, name)))
    return time_fit(module, _random_loader(case), device, case.precision, warmup, steps, case.batch)


RUNNERS: Dict[str, Callable[..., Dict[str, float]]] = {"pix2pix": run_pix2pix, "cyclegan": run_cyclegan}


# ---- the cases -------------------------------------------------------------------------------------------------------
def cases(device: str) -> List[Case]:
    from translate.tools.doctor import cpu_has_native_bf16

    out: List[Case] = []
    ref = dict(netG="unet_128", size=128, batch=1, ref=True)
    if device == "cpu":
        out += [
            Case("ref128", **ref),
            Case("ref128-cl", channels_last=True, **ref),
            Case("ref128-1thread", threads=1, **ref),
            Case("ref128-files-w0", data="files", workers=0, **ref),
            Case("ref128-files-w1", data="files", workers=1, **ref),
            Case("ref128-files-w0-bf16", data="files", workers=0, precision="bf16-mixed", **ref),
        ]
    bf16_slow = device == "cpu" and not cpu_has_native_bf16()
    for b in (1, 16):
        for precision, tag in (("32-true", "fp32"), ("bf16-mixed", "bf16")):
            for cl in (False, True):
                slow = device == "cpu" and (b > 1 or (precision == "bf16-mixed" and bf16_slow))
                out.append(Case(f"256-b{b}-{tag}{'-cl' if cl else ''}", batch=b, precision=precision, channels_last=cl,
                                slow=slow))
        if device == "cuda":
            out.append(Case(f"256-b{b}-bf16-cl-compile", batch=b, precision="bf16-mixed", channels_last=True,
                            compile=True))
    # CycleGAN with the reference's defaults (resnet_9blocks, instance norm, LSGAN, pool 50), in-memory batches
    cyc = dict(method="cyclegan", netG="resnet_9blocks")
    if device == "cpu":
        out.append(Case("cyclegan128", size=128, batch=1, **cyc))
        out.append(Case("cyclegan128-bf16", size=128, batch=1, precision="bf16-mixed", **cyc))
    for b in (1, 4):
        out.append(Case(f"cyclegan256-b{b}-fp32", size=256, batch=b, slow=device == "cpu", **cyc))
        if device == "cuda":
            out.append(Case(f"cyclegan256-b{b}-bf16-cl", size=256, batch=b, precision="bf16-mixed",
                            channels_last=True, **cyc))
            out.append(Case(f"cyclegan256-b{b}-bf16-cl-compile", size=256, batch=b, precision="bf16-mixed",
                            channels_last=True, compile=True, **cyc))
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


def write_unaligned_files(root: str, side: int = 128) -> None:
    """root/trainA, root/trainB: the two halves of root/train's A|B pairs, resized to `side` px (unpaired layout)."""
    from PIL import Image

    for name, half in (("A", 0), ("B", 1)):
        out = Path(root) / f"train{name}"
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted((Path(root) / "train").glob("*.png")):
            with Image.open(path) as ab:
                w, h = ab.size
                img = ab.crop((half * w // 2, 0, (half + 1) * w // 2, h)).resize((side, side), Image.BICUBIC)
            img.save(out / path.name)


# ---- the reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix), timed from its own train.py ----------------
@dataclass
class ReferenceRun:
    """A reference train.py configuration, run on the `files` data (--dataroot holds train/, trainA/, trainB/)."""

    model: str  # --model: pix2pix (aligned A|B pairs) | cycle_gan (unaligned trainA/trainB)
    netG: str  # --netG
    size: int  # --load_size = --crop_size
    workers: int = 4  # --num_threads: DataLoader workers (the reference's default is 4)
    batch: int = 1  # --batch_size
    gpu: bool = False  # --gpu_ids 0 (else -1: the CPU)

    def argv(self, data_root: str, checkpoints: str, n_iters: int) -> List[str]:
        epochs = -(-n_iters // FILES_N_PAIRS)  # one epoch is at most FILES_N_PAIRS iterations
        return ["--dataroot", data_root, "--name", "bench", "--checkpoints_dir", checkpoints, "--model", self.model,
                "--netG", self.netG, "--load_size", str(self.size), "--crop_size", str(self.size),
                "--batch_size", str(self.batch), "--num_threads", str(self.workers),
                "--gpu_ids", "0" if self.gpu else "-1",
                "--display_id", "0", "--no_html", "--print_freq", "1", "--n_epochs", str(epochs),
                "--n_epochs_decay", "0", "--max_dataset_size", str(min(n_iters, FILES_N_PAIRS)),
                "--save_epoch_freq", "100000", "--save_latest_freq", "100000000"]

    def describe(self) -> str:
        return f"reference {self.model} {self.netG} {self.size}px b{self.batch}, {self.workers} workers"


# Our case name -> the reference run it is compared with (same data, same architecture, batch and crop size).
# `ref128` (in-memory batches) is compared with the reference as users run it (4 loader workers); the `files` cases
# with the reference using as many loader workers as ours. An entry without a case of ours is run reference-only.
REFERENCE_CASES: Dict[str, ReferenceRun] = {
    "ref128": ReferenceRun("pix2pix", "unet_128", 128),
    "ref128-files-w0": ReferenceRun("pix2pix", "unet_128", 128, workers=0),
    "ref128-files-w1": ReferenceRun("pix2pix", "unet_128", 128, workers=1),
    "cyclegan128": ReferenceRun("cycle_gan", "resnet_9blocks", 128),
    # our bf16-mixed autocast against the reference as it runs (fp32: it has no mixed precision on the CPU)
    "ref128-files-w0-bf16": ReferenceRun("pix2pix", "unet_128", 128, workers=0),
    "cyclegan128-bf16": ReferenceRun("cycle_gan", "resnet_9blocks", 128),
    # GPU, 256 px (the CycleGAN issue's GPU target): the reference in fp32 on the GPU, as it runs
    "cyclegan256-b1-fp32": ReferenceRun("cycle_gan", "resnet_9blocks", 256, gpu=True),
    "cyclegan256-b1-bf16-cl": ReferenceRun("cycle_gan", "resnet_9blocks", 256, gpu=True),
}
_REFERENCE_LOG = re.compile(r"\(epoch: \d+, iters: \d+, time: ([0-9.]+), data: ([0-9.]+)\)")


def run_reference(run: ReferenceRun, repo: str, data_root: str, warmup: int, steps: int,
                  timeout: float) -> Optional[Dict[str, float]]:
    """Run the reference train.py for warmup + steps iterations with --print_freq 1; per iteration it logs t_comp
    (set_input + optimize_parameters) and t_data (waiting for the loader), so t_comp + t_data is the iteration's wall
    time. Returns the mean and median over the iterations after the warm-up, or None (and prints why) on failure."""
    with tempfile.TemporaryDirectory(prefix="bench_ref_") as ckpt:
        cmd = [sys.executable, "train.py"] + run.argv(data_root, ckpt, warmup + steps)
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=repo, timeout=timeout,
                               env=dict(os.environ, PYTHONWARNINGS="ignore"))
        except subprocess.TimeoutExpired:
            print(f"  reference {run.model}: abandoned after {timeout:.0f} s", flush=True)
            return None
    per_it = [float(c) + float(d) for c, d in _REFERENCE_LOG.findall(r.stdout)][warmup:warmup + steps]
    if r.returncode != 0 or len(per_it) < steps:
        print(f"  reference {run.model}: failed (exit {r.returncode}, {len(per_it)}/{steps} timed iterations logged)"
              f"\n{r.stderr[-3000:]}", flush=True)
        return None
    return {"s_per_it": statistics.mean(per_it), "median_s_per_it": statistics.median(per_it),
            "img_per_s": run.batch / statistics.mean(per_it)}


def _mean_runs(runs: List[Dict[str, float]]) -> Dict[str, float]:
    """Mean over repeated runs of every numeric field (s/it, median step, memory), img/s from the mean s/it; `runs`
    keeps the runs."""
    out = {k: statistics.mean(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], (int, float))}
    images_per_step = statistics.mean(r["img_per_s"] * r["s_per_it"] for r in runs)
    out["img_per_s"] = images_per_step / out["s_per_it"]
    return dict(out, runs=runs)


# ---- driver ----------------------------------------------------------------------------------------------------------
def run_case(spec: dict, timeout: float) -> Optional[Dict[str, float]]:
    """Run one of our cases (`spec` as for --one) in a subprocess; its result, or None (and print why)."""
    name = spec["case"]["name"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    t = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True,
                           text=True, env=env, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  {name}: abandoned after {timeout:.0f} s", flush=True)
        return None
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        print(f"  {name}: failed (exit {r.returncode})\n{r.stderr[-3000:]}", flush=True)
        return None
    res = dict(json.loads(line[len("RESULT "):]), warmup=spec["warmup"], steps=spec["steps"])
    print(f"  {name}: {res['s_per_it']:.3f} s/it ({time.perf_counter() - t:.0f} s with start-up)", flush=True)
    return res


def _patterns(configs: str) -> List[str]:
    return [p.strip() for p in configs.split(",") if p.strip()]


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
                   help="the reference implementation's s/it on the ref128 configuration, measured elsewhere on this "
                        "machine (default: none; prefer --reference-repo, which measures it alongside ours)")
    p.add_argument("--reference-repo", metavar="PATH",
                   help="a checkout of junyanz/pytorch-CycleGAN-and-pix2pix: also time its train.py on the same data "
                        "for the cases in REFERENCE_CASES, alternating ours and the reference (--repeats each), and "
                        "take `vs ref` from that measurement instead of --ref-s-per-it")
    p.add_argument("--repeats", type=int, default=2, help="runs of ours and of the reference each, alternated "
                   "(with --reference-repo)")
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
    ref_repo = args.reference_repo
    if ref_repo and not (Path(ref_repo) / "train.py").is_file():
        sys.exit(f"--reference-repo {ref_repo}: no train.py there (expected a checkout of "
                 "junyanz/pytorch-CycleGAN-and-pix2pix)")
    if ref_repo and args.repeats < 1:
        sys.exit(f"--repeats: expected >= 1, got {args.repeats}")
    # reference entries without a case of ours run reference-only when --configs names them (all, without --configs)
    ours = {c.name for c in all_cases}
    pats = _patterns(args.configs) or ["*"]
    ref_only = [n for n in REFERENCE_CASES if ref_repo and n not in ours and any(fnmatch.fnmatch(n, p) for p in pats)]
    names_ours = not args.configs or any(fnmatch.fnmatch(n, p) for n in ours for p in pats)
    chosen = select(all_cases, args.configs, skip_slow, args.quick) if names_ours or not ref_only else []
    ref_runs = {c.name: REFERENCE_CASES[c.name] for c in chosen if ref_repo and c.name in REFERENCE_CASES}
    ref_runs.update({n: REFERENCE_CASES[n] for n in ref_only})

    need_files = ref_runs or any(c.data == "files" for c in chosen)
    data_root = tempfile.mkdtemp(prefix="bench_data_") if need_files else None
    results, ref_rows = [], []
    try:
        if data_root:
            write_files(data_root)
            if any(r.model == "cycle_gan" for r in ref_runs.values()):
                write_unaligned_files(data_root, max(r.size for r in ref_runs.values() if r.model == "cycle_gan"))
        for case in chosen:
            w, s = (1, args.slow_steps) if case.slow else (warmup, steps)
            spec = {"case": asdict(case), "device": args.device, "warmup": w, "steps": s, "data_root": data_root}
            ref = ref_runs.get(case.name)
            ours_runs, theirs = [], []
            for _ in range(args.repeats if ref else 1):  # ABAB: machine noise falls on both alike
                res = run_case(spec, args.timeout)
                ours_runs += [res] if res else []
                if ref:
                    r = run_reference(ref, ref_repo, data_root, w, s, args.timeout)
                    if r:
                        theirs.append(r)
                        print(f"  {case.name} (reference): {r['s_per_it']:.3f} s/it", flush=True)
            if ours_runs:
                res = _mean_runs(ours_runs) if len(ours_runs) > 1 else ours_runs[0]
                results.append((case, dict(res, ref=_mean_runs(theirs)) if theirs else res))
        for name in ref_only:
            theirs = [r for r in (run_reference(ref_runs[name], ref_repo, data_root, warmup, steps, args.timeout)
                                  for _ in range(args.repeats)) if r]
            ref_rows += [(name, ref_runs[name], _mean_runs(theirs))] if theirs else []
    finally:
        if data_root:
            shutil.rmtree(data_root, ignore_errors=True)
    report(results, args, ref_rows)


def report(results, args, ref_rows=()) -> None:
    """The table; with --reference-repo each compared case is followed by its reference row, and `vs ref` is the
    measured reference median step over ours (the other `ref` cases use ref128's reference, else --ref-s-per-it)."""
    import torch

    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {os.cpu_count()} cores"
    print(f"\ntraining throughput on {where}, torch {torch.__version__}; s/it = mean over the timed steps"
          f"{', med = median step' if args.device == 'cpu' else ''}")
    mem = "peak MiB" if args.device == "cuda" else "+RSS MiB"
    print(f"{'case':24s} {'configuration':58s} {'s/it':>7s} {'med':>7s} {'img/s':>7s} {mem:>9s} "
          f"{'vs fp32':>7s} {'vs ref':>7s}")
    base: Dict[tuple, float] = {}
    measured_ref = next((r["ref"]["median_s_per_it"] for c, r in results if c.name == "ref128" and "ref" in r), None)
    for case, res in results:
        key = (case.method, case.netG, case.size, case.batch, case.data, case.workers, case.threads)
        if case.precision == "32-true" and not case.channels_last and not case.compile:
            base.setdefault(key, res["img_per_s"])
        vs_fp32 = f"{res['img_per_s'] / base[key]:6.2f}x" if key in base else "-"
        med = res["median_s_per_it"]
        vs_ref = ""
        if case.ref or "ref" in res:
            ours = med if med == med else res["s_per_it"]  # median where there is one (CPU)
            theirs = res["ref"]["median_s_per_it"] if "ref" in res else measured_ref or args.ref_s_per_it
            vs_ref = f"{theirs / ours:6.2f}x" if theirs else "-"
        print(f"{case.name:24s} {case.describe():58s} {res['s_per_it']:7.3f} "
              f"{(f'{med:7.3f}' if med == med else '      -')} {res['img_per_s']:7.2f} {res['peak_mib']:9.0f} "
              f"{vs_fp32:>7s} {vs_ref:>7s}")
        if "ref" in res:
            _print_reference_row("  reference", REFERENCE_CASES[case.name], res["ref"])
    for name, run, ref in ref_rows:
        _print_reference_row(f"{name} (ref only)", run, ref)
    if measured_ref is not None or any("ref" in r for _, r in results):
        print(f"vs ref: the reference's median step, measured here alternately with ours ({args.repeats} runs each, "
              "means of the per-run medians), divided by ours; target >= 1.5x")
    elif args.ref_s_per_it and any(c.ref for c, _ in results):
        print(f"vs ref: the reference implementation's {args.ref_s_per_it} s/it on unet_128 / 128 px / batch 1 / fp32 "
              "divided by ours (median step on CPU); target >= 1.5x")
    if args.json:
        rows = [{"case": asdict(c), **r} for c, r in results]
        rows += [{"reference_only": name, "run": asdict(run), **ref} for name, run, ref in ref_rows]
        Path(args.json).write_text(json.dumps(rows, indent=1))


def _print_reference_row(label: str, run: ReferenceRun, ref: Dict[str, float]) -> None:
    print(f"{label:24s} {run.describe():58s} {ref['s_per_it']:7.3f} {ref['median_s_per_it']:7.3f} "
          f"{ref['img_per_s']:7.2f} {'-':>9s}")


if __name__ == "__main__":
    main()
