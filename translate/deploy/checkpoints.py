"""Checkpoint files: written atomically, read without executing code (no Lightning here: deploy code reads them;
Lightning's checkpoint I/O plugin is translate.train.runner.AtomicCheckpointIO)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import torch

from safeio import SAFE_TORCH_LOAD_GLOBALS, LoadError, torch_load_failure, write_atomic


class CheckpointError(LoadError):
    """A checkpoint that cannot be loaded: missing, a folder, unreadable, or one that would run code."""


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, then rename over it (priors.loaders.write_atomic): a crash
    never leaves half a file."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> Dict[str, Any]:
    """Load a checkpoint with `weights_only=True`: a file that would need to run code to load is refused (plain-data
    option classes such as pSp's argparse.Namespace `opts` are allowed: SAFE_TORCH_LOAD_GLOBALS).
    mmap: map the tensors instead of reading them (a cheap look at a checkpoint's entries)."""
    path = Path(path)
    if path.is_dir():
        hint = path / "checkpoints" / "last.ckpt"
        raise CheckpointError(f"{path} is a folder; expected a checkpoint file"
                              + (f", e.g. {hint}" if hint.is_file() else ""))
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(SAFE_TORCH_LOAD_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:
        raise CheckpointError(f"cannot load checkpoint {path} safely (weights_only=True): "
                              f"{torch_load_failure(e)}") from e
