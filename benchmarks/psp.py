"""pSp translation speed: encode (256 px) + decode (StyleGAN2 at 256 or 1024 px) images per second.

Builds the paper's networks (GradualStyleEncoder on IR-SE50, StyleGAN2 config F) with random weights (the speed does
not depend on them) and times `PSPNet.forward` as `predict`'s eager backend runs it (inference mode, constant
noise), after warm-up, in one process so that the variants share the machine's state:

    python benchmarks/psp.py                          # CPU: 1024 px, batch 1, fp32, ref ops
    python benchmarks/psp.py --device cuda --batch 8  # GPU rows: fp32 / bf16 autocast, ops cuda vs ref
    python benchmarks/psp.py --sizes 256 1024 --repeats 5
    python benchmarks/psp.py --modconv both           # per-sample vs shared-weight modulated convolutions
    python benchmarks/psp.py --modconv both --onnx bundle/   # and a 1024-px bundle's model.onnx (onnxruntime)

Prints seconds per image, images/s and the ratio to the first row of each size. Targets (issue 5): CPU at most 4 s
per 1024-px image (the reference pSp code with pure-PyTorch ops: about 9.4 s on the project's 2-core CPU); on an
H100, bf16 with the CUDA ops at least 2x our fp32 ref-ops throughput at batch 8.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from nets.encoders import build_encoder  # noqa: E402
from nets.psp import PSPNet  # noqa: E402
from priors.stylegan2 import Generator, GeneratorConfig  # noqa: E402


def build(size: int, device: str) -> PSPNet:
    torch.manual_seed(0)
    decoder = Generator(GeneratorConfig(img_resolution=size))
    encoder = build_encoder("GradualStyleEncoder", output_size=size, input_size=256)
    return PSPNet(encoder, decoder, torch.zeros(decoder.num_ws, 512)).eval().requires_grad_(False).to(device)


@contextlib.contextmanager
def ops_impl(impl: str):
    """Force the StyleGAN2 ops' implementation for the block (`auto` leaves the dispatch alone)."""
    from priors.ops import _backend

    with _backend.force(impl):
        yield


def time_rows(net: PSPNet, x: torch.Tensor, dtype: str, repeats: int, warmup: int) -> List[float]:
    autocast = (torch.autocast(x.device.type, dtype=torch.bfloat16) if dtype == "bf16"
                else contextlib.nullcontext())
    times = []
    with torch.inference_mode(), autocast:
        for i in range(warmup + repeats):
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            net(x)
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def time_onnx(bundle: Path, x, repeats: int, warmup: int) -> List[float]:
    """Seconds per run of the bundle's model.onnx under onnxruntime (CPU) on the batch x."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        sess.run(None, {name: x})
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[1024])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--onnx", type=Path, nargs="*", default=[],
                   help="pSp bundle folders whose model.onnx to time too (onnxruntime CPU, same batch), e.g. one "
                        "made by `cli.py import --from psp` of a 1024-px model")
    p.add_argument("--modconv", choices=["fused", "shared", "both"], default="fused",
                   help="the decoder's modulated convolutions: per-sample weights (fused, eager inference's default) "
                        "or shared weights on scaled activations (shared: what exported bundles run)")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    variants = [("fp32", "ref")] + ([("fp32", "cuda"), ("bf16", "ref"), ("bf16", "cuda")] if cuda else [])
    modconvs = ["fused", "shared"] if args.modconv == "both" else [args.modconv]
    print(f"pSp encode+decode, device {args.device}, batch {args.batch}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.repeats} after {args.warmup} warm-up")
    print(f"{'output':>6} {'precision':>9} {'ops':>5} {'modconv':>7} {'s/image':>8} {'images/s':>9} {'vs first':>9}")
    for size in args.sizes:
        net = build(size, args.device)
        x = torch.rand(args.batch, 3, 256, 256, device=args.device) * 2 - 1
        first = None
        for dtype, impl in variants:
            for modconv in modconvs:
                net.fused_modconv = modconv == "fused"
                with ops_impl(impl):
                    t = statistics.median(time_rows(net, x, dtype, args.repeats, args.warmup)) / args.batch
                first = first or t
                print(f"{size:>6} {dtype:>9} {impl:>5} {modconv:>7} {t:>8.3f} {1 / t:>9.2f} {first / t:>8.2f}x")
        del net
        for bundle in args.onnx:
            t = statistics.median(time_onnx(bundle, x.cpu().numpy(), args.repeats, args.warmup)) / args.batch
            print(f"{size:>6} {'fp32':>9} {'onnx':>5} {'-':>7} {t:>8.3f} {1 / t:>9.2f} {first / t:>8.2f}x  {bundle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
