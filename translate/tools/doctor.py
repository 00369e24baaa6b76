"""`cli.py doctor`: what this installation can do, and why (versions, devices, compiled ops)."""
from __future__ import annotations

import importlib
import platform
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


def report() -> str:
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
    try:
        from priors.ops import backend

        info = backend()
        lines.append(f"stylegan2 ops     {info.get('backend')}: {info.get('reason')}")
    except ImportError as e:
        lines.append(f"stylegan2 ops     not installed ({e})")
    return "\n".join(lines)
