"""Paired data sets: the reference aligned layout, two folders paired by file stem, one folder + a degradation."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules.config import DataConfig
from datamodules.degrade import DEGRADATIONS, check_degradation
from datamodules.io import BadImageError, list_images, read_image, to_channels
from datamodules.transforms import PairTransform

SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """A data set that cannot be used as configured (names the file or folder)."""


class PairDataset(Dataset):
    """Base: subclasses return raw (source or None, target, name) per index; this class applies the transforms,
    makes sources for degradations and handles unreadable files (skip and count, or fail)."""

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        self.cfg, self.split, self.train = cfg, split, train
        self.transform = PairTransform(cfg, train)
        self.n_bad = 0
        self._warned: set = set()

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> Tuple[Optional[np.ndarray], np.ndarray, str]:
        raise NotImplementedError

    def make_source(self, index: int):
        return None

    def __getitem__(self, index: int) -> Dict[str, Any]:
        n = len(self)
        for attempt in range(n):
            i = (index + attempt) % n
            try:
                a, b, name = self.load(i)
            except BadImageError as e:
                if self.cfg.on_bad_image == "fail":
                    raise
                self.n_bad += 1
                if e.path not in self._warned:
                    self._warned.add(e.path)
                    warnings.warn(f"skipping unreadable image {e} (data.on_bad_image=skip)", stacklevel=2)
                continue
            src, tgt = self.transform(a, b, self.make_source(i))
            return {"A": src, "B": tgt, "A_path": name}
        raise DataError(f"no readable image in the {self.split} split ({n} files tried)")


def _split_dir(root: Path, split: str, fallback: Tuple[str, ...]) -> Path:
    for name in (split, *fallback):
        if (root / name).is_dir():
            return root / name
    raise DataError(f"no '{split}' folder in {root} (tried {[split, *fallback]})")


def _limit(files: List[Any], cfg: DataConfig) -> List[Any]:
    return files[: cfg.max_dataset_size] if cfg.max_dataset_size else files


class AlignedDataset(PairDataset):
    """root/{train,val,test}/*.png, each image the source and target side by side (A | B)."""

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        super().__init__(cfg, split, train)
        fallback = {"train": (), "val": ("test",), "test": ("val",)}[split]
        self.files = _limit(list_images(_split_dir(Path(cfg.root), split, fallback)), cfg)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int):
        path = self.files[index]
        ab = read_image(path, 3)
        h, w = ab.shape[:2]
        if w % 2:
            raise DataError(f"{path}: an A|B image must have an even width (two halves), got {w}x{h}")
        left, right = ab[:, : w // 2], ab[:, w // 2:]
        if self.cfg.direction == "BtoA":
            left, right = right, left
        a = to_channels(Image.fromarray(left), self.cfg.input_nc, path)
        b = to_channels(Image.fromarray(right), self.cfg.output_nc, path)
        return a, b, str(path)


class PairedFolderDataset(PairDataset):
    """root/A and root/B (or root/<split>/A, root/<split>/B), paired by file stem, never by order."""

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        super().__init__(cfg, split, train)
        root = Path(cfg.root)
        if any((root / s).is_dir() for s in SPLITS):
            fallback = {"train": (), "val": ("test",), "test": ("val",)}[split]
            root = _split_dir(root, split, fallback)
        src_dir, tgt_dir = (root / "A", root / "B") if cfg.direction == "AtoB" else (root / "B", root / "A")
        src = {p.stem: p for p in list_images(src_dir)}
        tgt = {p.stem: p for p in list_images(tgt_dir)}
        lonely_src, lonely_tgt = sorted(set(src) - set(tgt)), sorted(set(tgt) - set(src))
        if lonely_src or lonely_tgt:
            raise DataError(
                f"{root}: images without a partner (paired by file stem): "
                + "; ".join(f"only in {d.name}/: {', '.join(s[:10])}{' ...' if len(s) > 10 else ''}"
                            for d, s in ((src_dir, lonely_src), (tgt_dir, lonely_tgt)) if s))
        self.pairs = _limit([(src[s], tgt[s]) for s in sorted(src)], cfg)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int):
        a_path, b_path = self.pairs[index]
        a, b = read_image(a_path, self.cfg.input_nc), read_image(b_path, self.cfg.output_nc)
        if a.shape[:2] != b.shape[:2]:
            raise DataError(f"{a_path} is {a.shape[1]}x{a.shape[0]} but its partner {b_path} is "
                            f"{b.shape[1]}x{b.shape[0]}")
        return a, b, str(a_path)


class DegradedDataset(PairDataset):
    """One folder of clean images (root/ or root/<split>/); the source is made on the fly by a degradation."""

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        super().__init__(cfg, split, train)
        check_degradation(cfg.degradation)
        root = Path(cfg.root)
        if any((root / s).is_dir() for s in SPLITS):
            root = _split_dir(root, split, {"train": (), "val": ("test",), "test": ("val",)}[split])
        self.files = _limit(list_images(root), cfg)
        self.degrade = DEGRADATIONS[cfg.degradation.name]

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int):
        path = self.files[index]
        return None, read_image(path, self.cfg.output_nc), str(path)

    def make_source(self, index: int):
        # evaluation: the same degradation of the same image in every epoch; training: a fresh draw
        rng = (np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item())) if self.train
               else np.random.default_rng([self.cfg.synthetic.seed, index]))
        nc, deg = self.cfg.input_nc, self.cfg.degradation

        def make(target: np.ndarray) -> np.ndarray:
            src = self.degrade(target, rng, deg)
            if src.shape[2] != nc:
                src = to_channels(Image.fromarray(src if src.shape[2] == 3 else src[:, :, 0]), nc)
            return src

        return make
