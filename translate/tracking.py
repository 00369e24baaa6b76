"""Loggers (W&B offline by default, CSV) and the one image-logging helper every method calls."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image

from datamodules.io import label_palette

WANDB_MODES = ("offline", "online", "disabled")


class _ResumedWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; a resumed run keeps its rows up to the step it
    resumes from (later rows were logged after that checkpoint and are logged again)."""

    def __init__(self, log_dir: str, resume_step: int):
        self.resume_step = resume_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        # no call to Lightning's check: it warns that the directory's logs "will be deleted", which a resumed run
        # does not do
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as f:
            kept = [r for r in csv.DictReader(f) if int(float(r.get("step") or 0)) <= self.resume_step]
        if not kept:  # every row came after the checkpoint
            os.remove(self.metrics_file_path)
            return
        self.metrics_keys = sorted(set().union(*kept))
        tmp = self.metrics_file_path + ".tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.metrics_file_path)


class RunCSVLogger(CSVLogger):
    """metrics.csv in `<run_dir>/csv/`, continued (not replaced) when the run resumes from step `resume_step`."""

    def __init__(self, run_dir: Path, resume_step: Optional[int] = None):
        super().__init__(save_dir=str(run_dir), name="csv", version="")
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and self.resume_step is not None:
            os.makedirs(self.log_dir, exist_ok=True)
            self._experiment = _ResumedWriter(self.log_dir, self.resume_step)
        return super().experiment


class RunWandbLogger(WandbLogger):
    """Lightning's WandbLogger without the `anonymous` setting it always passes to `wandb.init`, which wandb has
    deprecated ("The anonymous setting has no effect", printed at every run)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        getattr(self, "_wandb_init", {}).pop("anonymous", None)


def build_loggers(cfg: Any, run_dir: Path, run_config: Dict[str, Any],
                  resume_step: Optional[int] = None) -> List[Logger]:
    """CSV (metrics.csv in the run dir, continued when resuming from step `resume_step`) and/or W&B, as `cfg` (a
    translate.config.LoggerConfig, not imported: the config floor is above this one) says; the resolved config is
    attached to the W&B run."""
    if cfg.wandb.mode not in WANDB_MODES:
        raise ValueError(f"logger.wandb.mode: expected one of {list(WANDB_MODES)}, got '{cfg.wandb.mode}'")
    loggers: List[Logger] = []
    if cfg.csv:
        loggers.append(RunCSVLogger(run_dir, resume_step))
    if cfg.wandb.mode != "disabled":
        os.environ.setdefault("WANDB_SILENT", "true")
        loggers.append(
            RunWandbLogger(
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
