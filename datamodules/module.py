"""One registry of paired data sets and the LightningDataModule that serves them."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from datamodules.config import DataConfig
from datamodules.degrade import check_degradation
from datamodules.images import ImageFolderDataset
from datamodules.paired import AlignedDataset, DataError, DegradedDataset, PairedFolderDataset
from datamodules.sampling import EpochRandomSampler, ResumableDataLoader
from datamodules.synthetic import SyntheticDataset, check_synthetic
from datamodules.toyfaces_data import ToyFacesDataset, check_toyfaces
from datamodules.transforms import check_preprocess
from datamodules.unaligned import SyntheticUnpairedDataset, UnalignedDataset
from safeio.errors import ConfigError

DATASETS = {
    "aligned": AlignedDataset,  # root/{train,val,test}/*: A | B side by side (the reference layout)
    "paired": PairedFolderDataset,  # root[/<split>]/A and .../B, paired by file stem
    "single": DegradedDataset,  # root[/<split>]/: clean targets, sources made by data.degradation
    "synthetic": SyntheticDataset,  # procedural facades, no files
    "toyfaces": ToyFacesDataset,  # procedural toy faces, no files; data.toyfaces.task picks A -> B
    "images": ImageFolderDataset,  # root[/<split>]/: one folder of images, A = B (training a prior)
    "unaligned": UnalignedDataset,  # root/trainA, trainB, testA, testB: unpaired (the reference CycleGAN layout)
    "synthetic_unpaired": SyntheticUnpairedDataset,  # procedural facades by day (A) / night (B), no files
}


def check_config(cfg: DataConfig) -> None:
    """Every data option checked before any file is read; messages name the key."""
    if cfg.kind not in DATASETS:
        raise ConfigError(f"data.kind: expected one of {list(DATASETS)}, got '{cfg.kind}'", key="data.kind")
    if cfg.direction not in ("AtoB", "BtoA"):
        raise ConfigError(f"data.direction: expected 'AtoB' or 'BtoA', got '{cfg.direction}'", key="data.direction")
    if cfg.on_bad_image not in ("skip", "fail"):
        raise ConfigError(f"data.on_bad_image: expected 'skip' or 'fail', got '{cfg.on_bad_image}'",
                          key="data.on_bad_image")
    if cfg.label_nc < 0 or (cfg.label_nc > 0 and cfg.kind != "paired"):
        raise ConfigError(f"data.label_nc: label-map sources (> 0) are read by data.kind 'paired' (A/ label maps, B/ "
                          f"images, matched by stem); got label_nc={cfg.label_nc} with kind '{cfg.kind}'",
                          key="data.label_nc")
    for key in ("input_nc", "output_nc"):
        if getattr(cfg, key) not in (1, 3):
            raise ConfigError(f"data.{key}: expected 1 or 3, got {getattr(cfg, key)}", key=f"data.{key}")
    if cfg.batch_size < 1 or cfg.num_workers < 0:
        raise ConfigError(f"data.batch_size must be >= 1 and data.num_workers >= 0, got {cfg.batch_size} and "
                          f"{cfg.num_workers}", key="data.batch_size")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction: expected a fraction in [0, 1), got {cfg.val_fraction}",
                          key="data.val_fraction")
    if cfg.max_dataset_size is not None and cfg.max_dataset_size < 1:
        raise ConfigError(f"data.max_dataset_size: expected a positive number or null, got {cfg.max_dataset_size}",
                          key="data.max_dataset_size")
    check_preprocess(cfg)
    if cfg.kind == "single":
        check_degradation(cfg.degradation)
    if cfg.kind in ("synthetic", "synthetic_unpaired"):
        check_synthetic(cfg.synthetic)
    elif cfg.kind == "toyfaces":
        check_toyfaces(cfg.toyfaces)
    else:
        if not cfg.root:
            raise ConfigError(f"data.root must be set for data.kind '{cfg.kind}'", key="data.root")
        if not Path(cfg.root).is_dir():
            if Path(cfg.root).exists():
                raise NotADirectoryError(f"data.root: expected a folder, got a file: {cfg.root}")
            raise FileNotFoundError(f"data.root: folder not found: {cfg.root}")


class PairedDataModule(pl.LightningDataModule):
    """Batches {"A": (N, input_nc, H, W), "B": (N, output_nc, H, W) in [-1, 1], "A_path": [str]}."""

    def __init__(self, cfg: DataConfig, seed: int = 0):
        super().__init__()
        check_config(cfg)
        self.cfg = cfg
        self.seed = seed  # the training order of epoch e is a permutation seeded by seed + e
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

    def validation_source(self) -> str:
        """Which images validate (and test), in one line, e.g. `4 pairs held out from data/mine (data.val_fraction
        0.1; 36 train)`. Reads the file lists: a data error shows here, before a run writes anything."""
        val, train = self.dataset("val"), self.dataset("train")
        origin = getattr(val, "origin", None) or f"generated by data.kind '{self.cfg.kind}', apart from the training set"
        return f"{len(val)} samples {origin} ({len(train)} train)"

    def validates_on_training_data(self) -> bool:
        return bool(getattr(self.dataset("val"), "same_as_train", False))

    @staticmethod
    def collate(items):
        """torch's default collate, with a DataError naming two files when images of one batch differ in size."""
        try:
            return default_collate(items)
        except RuntimeError as e:
            for key in ("A", "B"):
                sizes = [tuple(it[key].shape[-2:]) if isinstance(it.get(key), torch.Tensor) else None for it in items]
                odd = next((i for i, s in enumerate(sizes) if s != sizes[0]), None)
                if odd is not None:
                    (h0, w0), (h1, w1) = sizes[0], sizes[odd]
                    name = lambda it: it.get(f"{key}_path", "an image")  # noqa: E731
                    raise DataError(f"images of different sizes in one batch: {name(items[0])} is {w0}x{h0}, "
                                    f"{name(items[odd])} is {w1}x{h1}; use a data.preprocess that resizes (e.g. "
                                    f"resize_and_crop), images of one size, or data.batch_size=1") from e
            raise

    def _loader(self, split: str, loader=DataLoader, **kwargs) -> DataLoader:
        # never more loader workers than cores left over by the training process itself
        workers = max(0, min(self.cfg.num_workers, (os.cpu_count() or 1) - 1))
        return loader(
            self.dataset(split), batch_size=self.cfg.batch_size, num_workers=workers, persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(), collate_fn=self.collate, **kwargs,
        )

    def train_dataloader(self) -> ResumableDataLoader:
        """Shuffled per epoch from the run's seed (unless data.serial_batches), resumable mid-epoch; under DDP each
        process takes its share of the epoch's permutation (torch's DistributedSampler, made here with the run's
        seed)."""
        data = self.dataset("train")
        sampler = None
        if not self.cfg.serial_batches:
            ddp = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
            sampler = (DistributedSampler(data, **ddp, shuffle=True, seed=self.seed) if ddp
                       else EpochRandomSampler(data, seed=self.seed))
        loader = self._loader("train", ResumableDataLoader, sampler=sampler, drop_last=self.cfg.drop_last,
                              generator=torch.Generator().manual_seed(self.seed))
        if self.trainer is not None:
            # the epoch training goes on with: 0, or the one after a checkpoint saved at an epoch's end (one saved
            # mid-epoch puts the loader back in its epoch itself)
            loader.first_epoch = self.trainer.fit_loop.epoch_progress.current.processed
            loader.limit_batches = self.trainer.limit_train_batches
        return loader

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")


def build_datamodule(cfg: DataConfig, seed: int = 0) -> PairedDataModule:
    return PairedDataModule(cfg, seed=seed)


__all__ = ["DATASETS", "DataError", "PairedDataModule", "build_datamodule", "check_config"]
