"""Compiled CUDA ops against the reference PyTorch ops at the feature sizes of a 1024-px StyleGAN2.

For each case: forward and forward+backward milliseconds (CUDA events around each iteration after a warmup; the
median of --iters), the speedup of the compiled op, and the largest difference between the two outputs. The
reference path runs as shipped (cuDNN convolutions, TF32 allowed as by torch's defaults).

StyleGAN3's filtered_lrelu runs at the feature sizes of a 1024-px StyleGAN3-T (36 px at 512 channels with up/down 2,
the sampling-rate doubling with up 4, 276 px at 64 channels) with 12- and 24-tap Kaiser filters; a cached build of
the compiled ops that predates csrc/filtered_lrelu.cu has no such operator, and its rows then say so. `--cpu` times
the reference rows on the CPU (wall clock, median; smaller batches), which needs no GPU.

    python benchmarks/ops.py                      # fp32
    python benchmarks/ops.py --dtype float16 --iters 50
    python benchmarks/ops.py --cpu --iters 5      # filtered_lrelu's reference path on the CPU
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from priors.ops import (_backend, backend, bias_act, downsample2d, filtered_lrelu, setup_filter,  # noqa: E402
                        upsample2d)

# (N, C, H, W) of a 1024-px generator's features: 64 px at 512 channels, 256 px at 256, 1024 px at 32.
SHAPES = [(4, 512, 64, 64), (4, 256, 256, 256), (4, 32, 1024, 1024)]
FIR = [1, 3, 3, 1]  # StyleGAN2's resampling filter (4 taps, applied as a 4x4 2-D filter)


# filtered_lrelu at a 1024-px StyleGAN3-T's layer geometry: (C, H, W of the 3x3 conv's output, up, down, padding):
# a 36-px layer (-> 36), the layer where the sampling rate doubles (-> 52) and a 276-px layer (-> 276)
FLRELU_SHAPES = [(512, 38, 38, 2, 2, (9, 8, 9, 8)), (512, 38, 38, 4, 2, (-6, -9, -6, -9)),
                 (64, 278, 278, 2, 2, (9, 8, 9, 8))]


def flrelu_cases(device, batch: int) -> List[Dict]:
    """filtered_lrelu rows: 12-tap (24 at up 4) Kaiser-windowed low-pass filters, separable, as StyleGAN3-T's."""
    out = []
    for c, h, w, up, down, pad in FLRELU_SHAPES:
        fu = setup_filter(torch.kaiser_window(6 * up, periodic=False, beta=4.0), device=device, separable=True)
        fd = setup_filter(torch.kaiser_window(6 * down, periodic=False, beta=4.0), device=device, separable=True)
        b = torch.zeros(c, device=device)
        p = pad
        out.append({"op": f"filtered_lrelu {up}/{down}", "shape": (batch, c, h, w), "cuda_op": "filtered_lrelu",
                    "fn": lambda x, impl, fu=fu, fd=fd, b=b, up=up, down=down, p=p: filtered_lrelu(
                        x, fu, fd, b.to(x.dtype), up=up, down=down, padding=p, clamp=256, impl=impl)})
    return out


def cases(device, dtype) -> List[Dict]:
    f = setup_filter(FIR, device=device)
    out = []
    for shape in SHAPES:
        bias = torch.zeros(shape[1], device=device, dtype=dtype)
        out.append({"op": "upfirdn2d up2", "shape": shape,
                    "fn": lambda x, impl, f=f: upsample2d(x, f, impl=impl)})
        out.append({"op": "upfirdn2d down2", "shape": shape,
                    "fn": lambda x, impl, f=f: downsample2d(x, f, impl=impl)})
        out.append({"op": "bias_act lrelu", "shape": shape,
                    "fn": lambda x, impl, b=bias: bias_act(x, b, act="lrelu", impl=impl)})
    return out + flrelu_cases(device, batch=4)


def cpu_rows(iters: int, warmup: int) -> int:
    """filtered_lrelu's reference path on the CPU (batch 1, wall clock)."""
    print(f"CPU ({torch.get_num_threads()} threads) | torch {torch.__version__} | filtered_lrelu, impl='ref'")
    header = f"{'op':20s} {'shape':22s} {'fwd ms':>9s} {'fwd+bwd ms':>11s}"
    print(header + "\n" + "-" * len(header) + "   (median)")
    for case in flrelu_cases(torch.device("cpu"), batch=1):
        x = torch.randn(case["shape"])
        y = case["fn"](x, "ref")
        dy = torch.randn_like(y)
        xg = x.clone().requires_grad_()

        def fwd():
            with torch.no_grad():
                case["fn"](x, "ref")

        def fwd_bwd():
            xg.grad = None
            case["fn"](xg, "ref").backward(dy)

        ms = [cpu_ms(step, warmup, iters) for step in (fwd, fwd_bwd)]
        print(f"{case['op']:20s} {str(tuple(case['shape'])):22s} {ms[0]:9.1f} {ms[1]:11.1f}", flush=True)
    return 0


def cpu_ms(step: Callable[[], None], warmup: int, iters: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def time_ms(step: Callable[[], None], warmup: int, iters: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure(case: Dict, dtype, warmup: int, iters: int) -> Dict:
    torch.manual_seed(0)
    x = torch.randn(case["shape"], device="cuda", dtype=dtype)
    fn = case["fn"]
    row = {"op": case["op"], "shape": list(case["shape"]), "dtype": str(dtype).replace("torch.", "")}
    with torch.no_grad():
        outs = {impl: fn(x, impl) for impl in ("ref", "cuda")}
    dy = torch.randn_like(outs["ref"])
    for impl in ("ref", "cuda"):
        row[f"{impl}_fwd_ms"], row[f"{impl}_fwd_bwd_ms"] = time_impl(fn, impl, x, dy, warmup, iters)
    row["max_abs_diff"] = (outs["cuda"].float() - outs["ref"].float()).abs().max().item()
    return row


def time_impl(fn: Callable, impl: str, x: torch.Tensor, dy: torch.Tensor, warmup: int, iters: int):
    """(forward ms, forward + backward ms) of fn(x, impl)."""
    with torch.no_grad():
        fwd = time_ms(lambda: fn(x, impl), warmup, iters)
    xg = x.clone().requires_grad_()

    def fwd_bwd():
        xg.grad = None
        fn(xg, impl).backward(dy)

    return fwd, time_ms(fwd_bwd, warmup, iters)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=30, help="timed iterations per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--cpu", action="store_true", help="time filtered_lrelu's reference path on the CPU only")
    args = parser.parse_args(argv)
    if args.cpu:
        return cpu_rows(args.iters, min(args.warmup, 1))
    if not torch.cuda.is_available():
        print("benchmarks/ops.py compares the compiled CUDA ops with the reference ops on a GPU, and this machine has "
              "no CUDA device (torch.cuda.is_available() is False). Run it on a GPU machine.", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype)
    print("building / loading the compiled ops ...", flush=True)
    info = _backend.load_extension(device=torch.device("cuda"))
    if info["built_now"]:
        print(f"  built in {info['build_seconds']} s")
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | CUDA {torch.version.cuda} | "
          f"{backend()['reason']}\n  {info['extension']}")
    header = (f"{'op':16s} {'shape':20s} {'dtype':8s} {'ref fwd':>9s} {'cuda fwd':>9s} {'speedup':>7s} "
              f"{'ref f+b':>9s} {'cuda f+b':>9s} {'speedup':>7s} {'max|diff|':>9s}")
    print(header + "\n" + "-" * len(header) + "   (milliseconds, median)")
    rows = []
    for case in cases(torch.device("cuda"), dtype):
        if case.get("cuda_op") and not hasattr(torch.ops.translate_ops, case["cuda_op"]):
            print(f"{case['op']:16s} {str(tuple(case['shape'])):20s} {args.dtype:8s} no compiled {case['cuda_op']} "
                  "yet: see --cpu for the reference path")
            continue
        try:
            row = measure(case, dtype, args.warmup, args.iters)
        except torch.cuda.OutOfMemoryError:
            print(f"{case['op']:16s} {str(tuple(case['shape'])):20s} {args.dtype:8s} out of GPU memory")
            torch.cuda.empty_cache()
            continue
        rows.append(row)
        print(f"{row['op']:16s} {str(tuple(row['shape'])):20s} {row['dtype']:8s} "
              f"{row['ref_fwd_ms']:9.3f} {row['cuda_fwd_ms']:9.3f} {row['ref_fwd_ms'] / row['cuda_fwd_ms']:6.2f}x "
              f"{row['ref_fwd_bwd_ms']:9.3f} {row['cuda_fwd_bwd_ms']:9.3f} "
              f"{row['ref_fwd_bwd_ms'] / row['cuda_fwd_bwd_ms']:6.2f}x {row['max_abs_diff']:9.2e}", flush=True)
        torch.cuda.empty_cache()
    if args.json is not None:
        args.json.write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                         "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
