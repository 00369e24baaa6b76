"""`cli.py doctor`: what this installation can do, and why (versions, devices, compiled ops)."""
from __future__ import annotations

import importlib
import platform
import warnings
from pathlib import Path
from typing import List


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception as e:  # an optional package may be missing or broken; say which
        return f"not available ({type(e).__name__}: {e})"


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX-512 BF16 or AMX; read from /proc/cpuinfo, so Linux only)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def report(check_ops: bool = False) -> str:
    """The report, one line per item; check_ops: on a CUDA device, build and load the compiled ops and run their
    self-check in fp32, fp16 and bf16 first (otherwise the self-check runs on their first use)."""
    import torch

    lines: List[str] = [f"python            {platform.python_version()} ({platform.machine()})"]
    for name in ("torch", "torchvision", "pytorch_lightning", "torchmetrics", "kornia", "albumentations",
                 "omegaconf", "onnx", "onnxruntime", "safetensors", "wandb"):
        lines.append(f"{name:18s}{_version(name)}")
    if torch.cuda.is_available():
        devs = ", ".join(f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))})"
                         for i in range(torch.cuda.device_count()))
        lines.append(f"cuda              {torch.version.cuda}: {devs}")
    else:
        lines.append(f"cuda              no device (torch built with CUDA {torch.version.cuda})")
    lines.append(f"cpu threads       {torch.get_num_threads()}")
    lines.append("cpu bf16          " + ("native: trainer.precision=bf16-mixed trains faster on this CPU (CycleGAN "
                                         "1.6x here, benchmarks/README.md)" if cpu_has_native_bf16() else
                                         "not native: keep trainer.precision=32-true on this CPU"))
    lines += ops_report(check_ops)
    return "\n".join(lines)


def ops_report(check_ops: bool = False) -> List[str]:
    """The compiled ops' lines of the report: which path runs and why, and the self-check's outcome."""
    import torch

    try:
        from priors.ops import _backend, backend
    except ImportError as e:
        return [f"stylegan2 ops     not installed ({e})"]
    if check_ops and torch.cuda.is_available():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the failure is in the report below
            _backend.check_device(torch.device("cuda", torch.cuda.current_device()))
    info = backend()
    return [f"stylegan2 ops     {info.get('backend')}: {info.get('reason')}",
            f"ops self-check    {info.get('selfcheck')}"]
