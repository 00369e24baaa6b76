"""Which implementation of the ops runs. The compiled CUDA extension (csrc/) is not wired in yet: every call runs the
reference PyTorch path, and `impl="cuda"` says so instead of silently falling back."""
from __future__ import annotations

from typing import Dict

import torch

_REASON = "the compiled CUDA ops are not built in this version; the reference PyTorch path runs"


def use_cuda(x: torch.Tensor, impl: str) -> bool:
    if impl not in ("auto", "cuda", "ref"):
        raise ValueError(f"impl: expected 'auto', 'cuda' or 'ref', got '{impl}'")
    if impl == "cuda":
        raise RuntimeError(f"CUDA ops requested (impl='cuda') but {_REASON}")
    return False


def backend() -> Dict[str, str]:
    return {"backend": "ref", "reason": _REASON}


def upfirdn2d(*args, **kwargs):
    raise NotImplementedError(_REASON)


def bias_act(*args, **kwargs):
    raise NotImplementedError(_REASON)
