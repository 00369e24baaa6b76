"""Reading tensors without running code: torch.load(weights_only=True) and safetensors, with errors in words."""
from __future__ import annotations

import argparse
import re
import textwrap
from pathlib import Path
from typing import Dict

import torch

from safeio.errors import LoadError

# Plain-data classes that published .pt checkpoints hold besides tensors (rosinality's train.py saves its argparse
# options): allowed in torch.load(weights_only=True), which only sets their attributes.
SAFE_TORCH_LOAD_GLOBALS = [argparse.Namespace]


def torch_load_failure(e: BaseException) -> str:
    """Why torch.load(weights_only=True) failed, in words: a pickle that needs code (the global it asked for) is
    refused; anything else is not a readable PyTorch file. torch's own advice to retry with weights_only=False is
    left out: that is what this project refuses to do."""
    text = str(e)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if "Weights only load failed" in text and found:
        return f"it needs code to unpickle ({found.group(1)}), which is refused"
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    detail = next((line.strip() for line in text.splitlines()
                   if line.strip() and not any(b in line for b in boilerplate)), "")
    detail = textwrap.shorten(detail, 160, placeholder=" ...")  # whole words: never cut mid-word
    return f"not a readable PyTorch file, or a truncated one ({type(e).__name__}{': ' + detail if detail else ''})"


def read_safetensors(path: str | Path) -> Dict[str, torch.Tensor]:
    """The tensors of a .safetensors file; a truncated or foreign file is a LoadError (a ValueError) naming it,
    not the Rust library's bare SafetensorError."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - SafetensorError and friends: the file is the problem
        raise LoadError(f"cannot read {path} as safetensors (truncated, or not a .safetensors file): "
                             f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e
