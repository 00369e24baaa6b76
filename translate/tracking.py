"""Loggers (W&B offline by default, CSV) and the one image-logging helper every method calls."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image

from translate.config import LoggerConfig

WANDB_MODES = ("offline", "online", "disabled")


def build_loggers(cfg: LoggerConfig, run_dir: Path, run_config: Dict[str, Any]) -> List[Logger]:
    """CSV (metrics.csv in the run dir) and/or W&B; the resolved config is attached to the W&B run."""
    if cfg.wandb.mode not in WANDB_MODES:
        raise ValueError(f"logger.wandb.mode: expected one of {list(WANDB_MODES)}, got '{cfg.wandb.mode}'")
    loggers: List[Logger] = []
    if cfg.csv:
        loggers.append(CSVLogger(save_dir=str(run_dir), name="csv", version=""))
    if cfg.wandb.mode != "disabled":
        os.environ.setdefault("WANDB_SILENT", "true")
        loggers.append(
            WandbLogger(
                project=cfg.wandb.project,
                entity=cfg.wandb.entity,
                name=cfg.wandb.name or run_dir.name,
                tags=list(cfg.wandb.tags),
                save_dir=str(run_dir),
                offline=cfg.wandb.mode == "offline",
                config=run_config,
            )
        )
    return loggers


def image_grid(rows: Sequence[torch.Tensor], n: int) -> torch.Tensor:
    """One grid image: each sample is a row, columns are `rows` (e.g. input | output | target) in [-1, 1]."""
    cols = []
    for t in rows:
        t = t[:n].detach().float().cpu()
        cols.append(t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t[:, :3])
    tiles = torch.stack(cols, dim=1).flatten(0, 1)  # (n * len(rows), 3, H, W), row-major
    return make_grid((tiles + 1) / 2, nrow=len(rows), padding=2, pad_value=1.0).clamp(0, 1)


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
