"""Loggers of a run: W&B (offline by default) and CSV, continued when a run resumes. (The image grids every method
logs through them: translate.methods.images.)"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from safeio.errors import ConfigError

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
    translate.train.config.LoggerConfig, not imported: the config floor is above this one) says; the resolved config is
    attached to the W&B run."""
    if cfg.wandb.mode not in WANDB_MODES:
        raise ConfigError(f"logger.wandb.mode: expected one of {list(WANDB_MODES)}, got '{cfg.wandb.mode}'",
                          key="logger.wandb.mode")
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
