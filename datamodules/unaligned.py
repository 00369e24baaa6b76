"""Unpaired data sets (CycleGAN): two folders of images with no pairing, and a procedural set whose pairing is known
but hidden from training.

Each item is {"A": (input_nc, H, W), "B": (output_nc, H, W), both float32 in [-1, 1], "A_path", "B_path": str,
"paired": bool}. `paired` is True where B is A's true counterpart (the synthetic set's validation and test splits),
so that a method can score translations against it; unaligned folders never have one.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules.config import DataConfig
from datamodules.io import BadImageError, DataError, list_images, read_image
from datamodules.paired import SPLITS
from datamodules.synthetic import LABELS, make_pair, split_size
from datamodules.transforms import PairTransform, as_hwc, to_tensor
from safeio.errors import ConfigError

SIDES = ("A", "B")


class ImageTransform(PairTransform):
    """The reference preprocessing for one image on its own: in unpaired data each side draws its own geometry."""

    def __call__(self, img: np.ndarray, name: str = "image") -> torch.Tensor:  # type: ignore[override]
        if self.train:
            self._reseed()
        self._check_crop(img, name)
        img = as_hwc(self.geometry(image=img)["image"])
        if self.colour is not None:
            img = as_hwc(self.colour(image=img)["image"])
        return to_tensor(img)


def unaligned_folder(root: Path, split: str, side: str, cfg: DataConfig) -> Path:
    """root/<split><side> as in the reference (trainA, testB, ...); validation reads `<data.val_split><side>` and
    falls back to `test<side>`, test falls back to validation."""
    names = {"train": ("train",), "val": (cfg.val_split, "test"), "test": ("test", cfg.val_split)}[split]
    for name in names:
        if (root / f"{name}{side}").is_dir():
            return root / f"{name}{side}"
    looked = ", ".join(f"{n}{side}/" for n in names)
    raise DataError(f"data.root {root}: no folder for side {side} of the '{split}' split (looked for {looked}); "
                    f"data.kind 'unaligned' expects trainA/, trainB/, testA/, testB/")


class UnpairedDataset(Dataset):
    """Base: subclasses give the number of images per side and `load(side, index)` -> (uint8 (H, W, C), name).

    Length is max(len A, len B). Item i holds A[i mod len A] and, in training, a random B (drawn from torch's
    generator, so seeded per loader worker) or, with data.serial_batches and in evaluation, B[i mod len B].
    Unreadable files are skipped (data.on_bad_image skip: warned about once, the next readable image of the same
    side is used) or raise (fail).
    """

    paired = False

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {list(SPLITS)}, got '{split}'")
        self.cfg, self.split, self.train = cfg, split, train
        self.transform = {side: ImageTransform(cfg, train) for side in SIDES}
        self.transform["B"].colour = None  # colour jitter goes to the source only, as for paired data
        self.bad_files: Set[str] = set()
        self._bad: Dict[str, Set[int]] = {side: set() for side in SIDES}

    @property
    def n_bad(self) -> int:
        return len(self.bad_files)

    def size(self, side: str) -> int:
        raise NotImplementedError

    def load(self, side: str, index: int) -> Tuple[np.ndarray, str]:
        raise NotImplementedError

    def __len__(self) -> int:
        return max(self.size("A"), self.size("B"))

    def _read(self, side: str, index: int) -> Tuple[np.ndarray, str]:
        n = self.size(side)
        for attempt in range(n):
            i = (index + attempt) % n
            if i in self._bad[side]:
                continue
            try:
                return self.load(side, i)
            except BadImageError as e:
                if self.cfg.on_bad_image == "fail":
                    raise
                self._bad[side].add(i)
                if e.path not in self.bad_files:
                    self.bad_files.add(e.path)
                    warnings.warn(f"skipping unreadable image {e} (data.on_bad_image: skip)", stacklevel=2)
        raise DataError(f"no readable image on side {side} of the '{self.split}' split ({n} files, all unreadable)")

    iterated = "A"  # the side walked through in order; the other gets a random partner (the reference: trainA)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        other = "B" if self.iterated == "A" else "A"
        other_index = index
        if self.train and not self.cfg.serial_batches:
            other_index = int(torch.randint(self.size(other), ()))  # a new random partner every time
        idx = {self.iterated: index % self.size(self.iterated), other: other_index % self.size(other)}
        a, a_name = self._read("A", idx["A"])
        b, b_name = self._read("B", idx["B"])
        return {"A": self.transform["A"](a, a_name), "B": self.transform["B"](b, b_name), "A_path": a_name,
                "B_path": b_name, "paired": self.paired}


class UnalignedDataset(UnpairedDataset):
    """The reference unaligned layout: root/trainA, root/trainB, root/testA, root/testB (optionally valA, valB),
    any number of images on each side. With data.direction BtoA the B folders are the source."""

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        super().__init__(cfg, split, train)
        root = Path(cfg.root)
        source, target = ("A", "B") if cfg.direction == "AtoB" else ("B", "A")
        self.files: Dict[str, List[Path]] = {}
        for side, folder_side in (("A", source), ("B", target)):
            folder = unaligned_folder(root, split, folder_side, cfg)
            try:
                files = list_images(folder)
            except FileNotFoundError as e:
                raise DataError(f"data.root: {e}") from e
            self.files[side] = files[: cfg.max_dataset_size] if cfg.max_dataset_size else files
        self.channels = {"A": cfg.input_nc, "B": cfg.output_nc}
        self.origin = "from " + " and ".join(str(unaligned_folder(root, split, side, cfg)) for side in "AB")
        # the reference always walks trainA and swaps the roles afterwards: with BtoA the target side is walked
        self.iterated = "A" if cfg.direction == "AtoB" else "B"

    def size(self, side: str) -> int:
        return len(self.files[side])

    def load(self, side: str, index: int) -> Tuple[np.ndarray, str]:
        path = self.files[side][index]
        return read_image(path, self.channels[side]), str(path)


# ---- the synthetic unpaired set: facades by day (A) and by night (B) ------------------------------------------
# per class: night colour = day colour * gain + offset (linear, so the mapping is a function of the day image)
NIGHT = {
    "sky": ((0.10, 0.12, 0.25), (0.00, 0.01, 0.05)),
    "wall": ((0.25, 0.28, 0.45), (0.00, 0.00, 0.03)),
    "window": ((0.50, 0.40, 0.20), (0.55, 0.42, 0.12)),  # lit: warm yellow, glass reflections kept faintly
    "door": ((0.30, 0.30, 0.40), (0.02, 0.02, 0.04)),
    "balcony": ((0.30, 0.30, 0.40), (0.00, 0.00, 0.02)),
    "cornice": ((0.30, 0.32, 0.50), (0.00, 0.00, 0.02)),
    "sill": ((0.30, 0.32, 0.50), (0.00, 0.00, 0.02)),
    "shop": ((0.40, 0.30, 0.20), (0.45, 0.35, 0.20)),  # lit shop windows
}


def night_style(day: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The same scene at night (uint8 (H, W, 3)): dark blue-tinted walls and sky, lit windows and shops. `labels`
    is the colour-coded label map of the scene (datamodules.synthetic.LABELS)."""
    out = day.astype(np.float32) / 255.0
    for name, colour in LABELS.items():
        gain, offset = NIGHT[name]
        sel = np.all(labels == np.array(colour, np.uint8), axis=-1)
        out[sel] = out[sel] * np.array(gain, np.float32) + np.array(offset, np.float32)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_scene(seed: int, split: str, index: int, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """(day, night) renderings of one procedural facade, uint8 (size, size, 3); a pure function of the arguments."""
    labels, day = make_pair(seed, split, index, size)
    return day, night_style(day, labels)


class SyntheticUnpairedDataset(UnpairedDataset):
    """The `synthetic_unpaired` kind: procedural facades by day (A) and the same scenes by night (B), from
    data.synthetic (size, n_train, n_val, seed), no files.

    Training: A shows scenes 0 .. n_train-1 and B scenes n_train .. 2 n_train-1 of the training stream, so no
    scene is ever seen in both styles and the pairing must be learnt without pairs. Validation and test: A with its
    true B counterpart (`paired` True), the hidden truth that `cli.py validate` scores G_A(A) against.
    With data.direction BtoA night is the source. Names look like "synthetic_unpaired/train/A/0007.png".
    """

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        super().__init__(cfg, split, train)
        if cfg.input_nc != 3 or cfg.output_nc != 3:
            raise ConfigError(f"data.kind 'synthetic_unpaired' renders RGB images: data.input_nc and data.output_nc "
                              f"must be 3, got {cfg.input_nc} and {cfg.output_nc}", key="data.kind")
        s = cfg.synthetic
        n = split_size(s, split)
        n = min(n, cfg.max_dataset_size) if cfg.max_dataset_size else n
        if split == "train":
            day = [make_scene(s.seed, split, i, s.size)[0] for i in range(n)]
            night = [make_scene(s.seed, split, n + i, s.size)[1] for i in range(n)]  # other scenes
        else:
            day, night = map(list, zip(*(make_scene(s.seed, split, i, s.size) for i in range(n))))
        sides = {"A": np.stack(day), "B": np.stack(night)}
        self.images = sides if cfg.direction == "AtoB" else {"A": sides["B"], "B": sides["A"]}
        self.paired = split != "train"

    def size(self, side: str) -> int:
        return len(self.images[side])

    def load(self, side: str, index: int) -> Tuple[np.ndarray, str]:
        return self.images[side][index], f"synthetic_unpaired/{self.split}/{side}/{index:04d}.png"


def write_unaligned_dataset(root: str | Path, cfg: DataConfig) -> Path:
    """Write the synthetic unpaired set as files in the reference layout: trainA/, trainB/ (disjoint scenes),
    testA/, testB/ (true counterparts, same file names)."""
    root = Path(root)
    for split, folder in (("train", "train"), ("test", "test")):
        ds = SyntheticUnpairedDataset(cfg, split, train=False)
        for side in SIDES:
            (root / f"{folder}{side}").mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(ds.images[side]):
                Image.fromarray(img).save(root / f"{folder}{side}" / f"{i:04d}.png")
    return root
