"""Image grids of a method's batches and the one helper every method logs them through (W&B, or PNG files)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image

from datamodules.io import label_palette


def image_grid(rows: Sequence[torch.Tensor], n: int) -> torch.Tensor:
    """One grid image: each sample is a row, columns are `rows` (e.g. input | output | target) in [-1, 1]."""
    cols = [displayable(t[:n].detach().float().cpu()) for t in rows]
    tiles = torch.stack(cols, dim=1).flatten(0, 1)  # (n * len(rows), 3, H, W), row-major
    return make_grid((tiles + 1) / 2, nrow=len(rows), padding=2, pad_value=1.0).clamp(0, 1)


def displayable(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 3, H, W) in [-1, 1]: gray replicated; one-hot label maps (segmentation inputs) in the VOC
    colours of their classes; other channel counts by their first three channels."""
    if t.shape[1] == 1:
        return t.expand(-1, 3, -1, -1)
    if t.shape[1] != 3 and bool(((t == 0) | (t == 1)).all()) and bool((t.sum(dim=1) == 1).all()):
        colours = torch.from_numpy(label_palette(t.shape[1])).float() / 127.5 - 1.0  # (C, 3)
        return colours[t.argmax(dim=1)].permute(0, 3, 1, 2)
    return t[:, :3]


def image_arrays(t: torch.Tensor) -> List[np.ndarray]:
    """(N, C, H, W) in [-1, 1] -> N uint8 (H, W, C) arrays: gray and RGB as they are, other channel counts as
    `displayable` shows them (one-hot label maps in class colours)."""
    t = t.detach().float().cpu()
    if t.shape[1] not in (1, 3):
        t = displayable(t)
    return list(((t + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())


@rank_zero_only
def log_images(
    loggers: Sequence[Logger], key: str, rows: Sequence[torch.Tensor], step: int, n: int = 4,
    caption: Optional[str] = None, image_dir: Optional[Path] = None,
) -> Optional[Path]:
    """Log a grid to every logger that takes images (W&B); otherwise save it as PNG under `image_dir`."""
    grid = image_grid(rows, n)
    wrote = None
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[grid], step=step, caption=[caption or key])
    if image_dir is not None:
        image_dir.mkdir(parents=True, exist_ok=True)
        wrote = image_dir / f"{key.replace('/', '_')}_{step:07d}.png"
        save_image(grid, wrote)
    return wrote
