"""One registry of paired data sets and the LightningDataModule that serves them."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.config import DataConfig
from datamodules.paired import AlignedDataset, DataError, DegradedDataset, PairDataset, PairedFolderDataset
from datamodules.synthetic import make_pair, split_size


class SyntheticDataset(PairDataset):
    """The procedural facades (datamodules.synthetic), generated once and kept in memory."""

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        super().__init__(cfg, split, train)
        s = cfg.synthetic
        n = split_size(s, "train" if split == "train" else "val")
        if cfg.input_nc != 3 or cfg.output_nc != 3:
            raise ValueError("data.kind synthetic: input_nc and output_nc must be 3")
        self.pairs = [make_pair(s.seed, "train" if split == "train" else "val", i, s.size) for i in range(n)]
        self.pairs = self.pairs[: cfg.max_dataset_size] if cfg.max_dataset_size else self.pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int):
        a, b = self.pairs[index]
        return a, b, f"synthetic/{self.split}/{index:05d}.png"


DATASETS = {
    "aligned": AlignedDataset,
    "paired": PairedFolderDataset,
    "single": DegradedDataset,
    "synthetic": SyntheticDataset,
}


def check_config(cfg: DataConfig) -> None:
    if cfg.kind not in DATASETS:
        raise ValueError(f"data.kind: expected one of {sorted(DATASETS)}, got '{cfg.kind}'")
    if cfg.direction not in ("AtoB", "BtoA"):
        raise ValueError(f"data.direction: expected 'AtoB' or 'BtoA', got '{cfg.direction}'")
    if cfg.on_bad_image not in ("skip", "fail"):
        raise ValueError(f"data.on_bad_image: expected 'skip' or 'fail', got '{cfg.on_bad_image}'")
    for key in ("input_nc", "output_nc"):
        if getattr(cfg, key) not in (1, 3):
            raise ValueError(f"data.{key}: expected 1 or 3, got {getattr(cfg, key)}")
    if cfg.kind != "synthetic":
        if not cfg.root:
            raise ValueError(f"data.root must be set for data.kind '{cfg.kind}'")
        if not Path(cfg.root).is_dir():
            raise FileNotFoundError(f"data.root: folder not found: {cfg.root}")


class PairedDataModule(pl.LightningDataModule):
    """Batches {"A": (N, input_nc, H, W), "B": (N, output_nc, H, W) in [-1, 1], "A_path": [str]}."""

    def __init__(self, cfg: DataConfig):
        super().__init__()
        check_config(cfg)
        self.cfg = cfg
        self.datasets: Dict[str, Dataset] = {}

    def dataset(self, split: str) -> Dataset:
        if split not in self.datasets:
            self.datasets[split] = DATASETS[self.cfg.kind](self.cfg, split, train=split == "train")
        return self.datasets[split]

    def setup(self, stage: Optional[str] = None) -> None:
        if stage in (None, "fit"):
            self.dataset("train")
            self.dataset("val")
        if stage == "validate":
            self.dataset("val")
        if stage in ("test", "predict"):
            self.dataset("test")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        # never more loader workers than cores left over by the training process itself
        workers = max(0, min(self.cfg.num_workers, (os.cpu_count() or 1) - 1))
        return DataLoader(
            self.dataset(split), batch_size=self.cfg.batch_size, shuffle=shuffle, num_workers=workers,
            persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(), drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=not self.cfg.serial_batches)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def build_datamodule(cfg: DataConfig) -> PairedDataModule:
    return PairedDataModule(cfg)


__all__ = ["DATASETS", "DataError", "PairedDataModule", "build_datamodule", "check_config"]
