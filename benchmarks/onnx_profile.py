"""Where onnxruntime spends a graph's time on the CPU: per op type and per node, from its own profiler.

For each ONNX file given (a bundle's `model.onnx` or `model_int8.onnx`, or a bundle folder: its onnx backend's
file), one session with --threads intra-op threads runs one random image of --size pixels --runs times after a
warm-up; printed: the mean kernel time of each op type (ms per image, share of the total) and the --top slowest
nodes with their input and output shapes. onnxruntime's graph optimisation is ALL, as the onnx backend runs it
(convolutions show up under the names onnxruntime's NCHWc and NHWC transformers give them).

    python benchmarks/onnx_profile.py bundles/cyclegan/model.onnx bundles/cyclegan_int8 --top 8

Results: benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np


def onnx_file(path: Path) -> Path:
    """A bundle folder -> the ONNX file its onnx backend runs; a file stays as it is."""
    if path.is_dir():
        meta = json.loads((path / "translator.json").read_text())
        return path / meta["files"].get("onnx", "model.onnx")
    return path


def profile(path: Path, threads: int, runs: int, size: int) -> Tuple[Dict[str, float], Dict[str, Tuple]]:
    """-> (ms per image of each op type, {node: (op type, ms per image, input shapes, output shapes)})."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    channels = inp.shape[1] if isinstance(inp.shape[1], int) else 3
    x = np.random.default_rng(0).uniform(-1, 1, (1, channels, size, size)).astype(np.float32)
    for _ in range(runs + 1):
        session.run(None, {inp.name: x})
    trace = session.end_profiling()
    events = json.loads(Path(trace).read_text())
    os.remove(trace)
    by_op: Counter = Counter()
    by_node: Dict[str, list] = {}
    seen: Counter = Counter()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name = e["name"][:-len("_kernel_time")]
        seen[name] += 1
        if seen[name] == 1:  # the first run is a warm-up
            continue
        op = e["args"]["op_name"]
        by_op[op] += e["dur"] / 1000 / runs
        entry = by_node.setdefault(name, [op, 0.0, _shapes(e["args"].get("input_type_shape")),
                                          _shapes(e["args"].get("output_type_shape"))])
        entry[1] += e["dur"] / 1000 / runs
    return dict(by_op), {k: tuple(v) for k, v in by_node.items()}


def _shapes(entries: Optional[List[dict]]) -> str:
    """onnxruntime's [{'float': [1, 3, 8, 8]}, ...] -> 'float[1,3,8,8] ...' (empty shapes left out)."""
    out = []
    for entry in entries or []:
        for dtype, shape in entry.items():
            if shape:
                out.append(f"{dtype}[{','.join(str(d) for d in shape)}]")
    return " ".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="ONNX files or bundle folders")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--runs", type=int, default=4, help="timed runs per model (default 4)")
    parser.add_argument("--size", type=int, default=256, help="side of the random input image (default 256)")
    parser.add_argument("--top", type=int, default=6, help="slowest nodes to list per model (default 6)")
    args = parser.parse_args(argv)
    for model in args.models:
        path = onnx_file(model)
        by_op, by_node = profile(path, args.threads, args.runs, args.size)
        total = sum(by_op.values())
        print(f"\n{path} ({args.threads} thread(s), {args.size}x{args.size}, mean of {args.runs} runs): "
              f"{total:.1f} ms of kernels per image\n")
        print("| op type | ms | share |\n|---|---:|---:|")
        for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1]):
            print(f"| {op} | {ms:.1f} | {100 * ms / total:.1f}% |")
        print(f"\n| slowest nodes | op | ms | inputs -> outputs |\n|---|---|---:|---|")
        for name, (op, ms, ins, outs) in sorted(by_node.items(), key=lambda kv: -kv[1][1])[:args.top]:
            print(f"| {name} | {op} | {ms:.1f} | {ins} -> {outs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
