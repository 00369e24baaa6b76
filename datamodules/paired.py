"""Paired data sets: the reference aligned layout, two folders paired by file stem, one folder + a degradation.

Each returns {"A": source (input_nc, H, W), "B": target (output_nc, H, W), both float32 in [-1, 1], "A_path": str}.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules.config import DataConfig
from datamodules.degrade import DEGRADATIONS, check_degradation
from datamodules.io import BadImageError, DataError, list_images, read_image, read_label_map, to_channels
from datamodules.transforms import PairTransform, resize_bicubic

SPLITS = ("train", "val", "test")
SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}  # seeds the per-sample evaluation degradations
MAX_LISTED = 10  # stems named in a missing-partner error
__all__ = ["AlignedDataset", "DataError", "DegradedDataset", "PairDataset", "PairedFolderDataset", "SPLITS"]


class PairDataset(Dataset):
    """Base: subclasses return raw (source or None, target, name) per index; this class applies the transforms,
    makes sources for degradations and handles unreadable files.

    on_bad_image "skip": an unreadable file is warned about once, remembered (`n_bad` counts distinct files; with
    loader workers each worker counts its own), and the next readable sample is returned in its place, so batches
    keep their size. "fail": the BadImageError naming the file propagates.
    """

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {list(SPLITS)}, got '{split}'")
        self.cfg, self.split, self.train = cfg, split, train
        self.transform = PairTransform(cfg, train)
        self.bad_files: Set[str] = set()
        self._bad_indices: Set[int] = set()

    @property
    def n_bad(self) -> int:
        return len(self.bad_files)

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> Tuple[Optional[np.ndarray], np.ndarray, str]:
        raise NotImplementedError

    def make_source(self, index: int) -> Optional[Callable[[np.ndarray], np.ndarray]]:
        return None

    def __getitem__(self, index: int) -> Dict[str, Any]:
        n = len(self)
        for attempt in range(n):
            i = (index + attempt) % n
            if i in self._bad_indices:
                continue
            try:
                a, b, name = self.load(i)
            except BadImageError as e:
                if self.cfg.on_bad_image == "fail":
                    raise
                self._bad_indices.add(i)
                if e.path not in self.bad_files:
                    self.bad_files.add(e.path)
                    warnings.warn(f"skipping unreadable image {e} (data.on_bad_image: skip)", stacklevel=2)
                continue
            src, tgt = self.transform(a, b, self.make_source(i), name=name)
            return {"A": src, "B": tgt, "A_path": name}
        raise DataError(f"no readable image in the '{self.split}' split ({n} files, all unreadable)")


def split_folder(root: Path, split: str, cfg: DataConfig) -> Path:
    """root/<split>; validation uses data.val_split and falls back to test, test falls back to validation."""
    names = {"train": ("train",), "val": (cfg.val_split, "test"), "test": ("test", cfg.val_split)}[split]
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"no folder for the '{split}' split in {root} (looked for {', '.join(names)})")


def has_split_folders(root: Path, cfg: DataConfig) -> bool:
    return any((root / name).is_dir() for name in ("train", cfg.val_split, "test"))


def _limit(items: List[Any], cfg: DataConfig) -> List[Any]:
    return items[: cfg.max_dataset_size] if cfg.max_dataset_size else items


HOLDOUT_SEED = 0  # the held-out choice depends on the file list only, not on the run's seed: runs stay comparable


def holdout(items: List[Any], split: str, cfg: DataConfig, root: Path) -> Tuple[List[Any], str, bool]:
    """A folder without split folders: `data.val_fraction` of its items (sorted by name; a fixed seeded choice, at
    least one) validate and test, the others train. Returns the split's items, where they come from (for the line
    `fit` prints) and whether validation reads the training items (val_fraction 0)."""
    n, fraction = len(items), cfg.val_fraction
    if fraction == 0:
        return items, f"from {root}: the training images (data.val_fraction 0)", split != "train"
    if n < 2:
        raise DataError(f"{root}: {n} image(s): nothing can be held out for validation; add images, use split "
                        f"folders (train/, val/), or set data.val_fraction=0 and checkpoint.monitor=null")
    k = min(n - 1, max(1, round(n * fraction)))
    held = set(np.random.default_rng(HOLDOUT_SEED).permutation(n)[:k].tolist())
    chosen = [it for i, it in enumerate(items) if (i in held) == (split != "train")]
    return chosen, f"held out from {root} (data.val_fraction {fraction})", False


class AlignedDataset(PairDataset):
    """The reference layout: root/{train,val,test}/*, each image the pair side by side (A | B), split at width/2."""

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        super().__init__(cfg, split, train)
        folder = split_folder(Path(cfg.root), split, cfg)
        self.files, self.origin = _limit(list_images(folder), cfg), f"from {folder}"

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int):
        path = self.files[index]
        ab = read_image(path, 3)
        h, w = ab.shape[:2]
        if w % 2 and self.cfg.preprocess != "resize_and_crop":  # there both halves are resized to load_size anyway
            raise DataError(f"{path}: an A|B image of odd width {w} splits into halves of {w // 2} and {w - w // 2} "
                            f"px, which data.preprocess '{self.cfg.preprocess}' keeps unequal; use even widths or "
                            f"resize_and_crop (which, as the reference, gives B the extra column and resizes both)")
        left, right = ab[:, : w // 2], ab[:, w // 2:]
        src, tgt = (left, right) if self.cfg.direction == "AtoB" else (right, left)
        a = to_channels(Image.fromarray(src), self.cfg.input_nc, path)
        b = to_channels(Image.fromarray(tgt), self.cfg.output_nc, path)
        if w % 2:  # resize_and_crop's first step, done here on each half so that the pair has one size
            size = self.cfg.load_size
            a, b = resize_bicubic(a, size, size), resize_bicubic(b, size, size)
        return a, b, str(path)


def _by_stem(folder: Path) -> Dict[str, Path]:
    files: Dict[str, Path] = {}
    for p in list_images(folder):
        if p.stem in files:
            raise DataError(f"{folder}: two images share the stem '{p.stem}' ({files[p.stem].name}, {p.name}); "
                            f"pairs are matched by stem, so each stem must be unique")
        files[p.stem] = p
    return files


def _listed(stems: List[str]) -> str:
    more = f" ... ({len(stems) - MAX_LISTED} more)" if len(stems) > MAX_LISTED else ""
    return ", ".join(stems[:MAX_LISTED]) + more


class PairedFolderDataset(PairDataset):
    """root/A and root/B (or root/<split>/A and root/<split>/B when root/train exists), paired by file stem,
    never by order: A/x.png goes with B/x.jpg. Without split folders every split reads root/A and root/B."""

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        super().__init__(cfg, split, train)
        root = Path(cfg.root)
        split_folders = has_split_folders(root, cfg)
        if split_folders:
            root = split_folder(root, split, cfg)
        src_dir, tgt_dir = (root / "A", root / "B") if cfg.direction == "AtoB" else (root / "B", root / "A")
        src, tgt = _by_stem(src_dir), _by_stem(tgt_dir)
        lonely_src, lonely_tgt = sorted(set(src) - set(tgt)), sorted(set(tgt) - set(src))
        if lonely_src or lonely_tgt:
            raise DataError(
                f"{root}: images without a partner (pairs are matched by file stem): "
                + "; ".join(f"only in {d.name}/: {_listed(s)}"
                            for d, s in ((src_dir, lonely_src), (tgt_dir, lonely_tgt)) if s))
        pairs = [(src[s], tgt[s]) for s in sorted(src)]
        self.origin, self.same_as_train = f"from {root}", False
        if not split_folders:
            pairs, self.origin, self.same_as_train = holdout(pairs, split, cfg, root)
        self.pairs = _limit(pairs, cfg)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int):
        a_path, b_path = self.pairs[index]
        if self.cfg.label_nc > 0:
            a = read_label_map(a_path, self.cfg.label_nc)
        else:
            a = read_image(a_path, self.cfg.input_nc)
        b = read_image(b_path, self.cfg.output_nc)
        if a.shape[:2] != b.shape[:2]:
            raise DataError(f"{a_path} is {a.shape[1]}x{a.shape[0]} but its partner {b_path} is "
                            f"{b.shape[1]}x{b.shape[0]}; the two images of a pair must have the same size")
        return a, b, str(a_path)


class DegradedDataset(PairDataset):
    """One folder of clean images (root/ or root/<split>/ when root/train exists) as targets; the source is made on
    the fly from the preprocessed target by `data.degradation` and converted to input_nc channels."""

    holds_out = True  # without split folders, data.val_fraction of the images validate (see `holdout`)

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        super().__init__(cfg, split, train)
        check_degradation(cfg.degradation)
        root = Path(cfg.root)
        split_folders = has_split_folders(root, cfg)
        if split_folders:
            root = split_folder(root, split, cfg)
        files = list_images(root)
        self.origin, self.same_as_train = f"from {root}", False
        if not split_folders:
            if self.holds_out:
                files, self.origin, self.same_as_train = holdout(files, split, cfg, root)
            else:
                self.origin, self.same_as_train = f"from {root}: the training images", split != "train"
        self.files = _limit(files, cfg)
        self.degrade = DEGRADATIONS[cfg.degradation.name]

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int):
        path = self.files[index]
        return None, read_image(path, self.cfg.output_nc), str(path)

    def make_source(self, index: int) -> Callable[[np.ndarray], np.ndarray]:
        # training: a fresh draw from torch's generator (seeded per loader worker); evaluation: seeded by
        # (split, index), so validation sees the same degraded sources in every epoch
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64)) if self.train else [SPLIT_IDS[self.split], index]
        rng = np.random.default_rng(seed)
        nc, deg = self.cfg.input_nc, self.cfg.degradation

        def make(target: np.ndarray) -> np.ndarray:
            src = self.degrade(target, rng, deg)
            if src.shape[2] != nc:
                src = to_channels(Image.fromarray(src if src.shape[2] == 3 else src[:, :, 0]), nc)
            return src

        return make
