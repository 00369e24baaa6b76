"""Indexed toy faces: `face_params(seed, split, index)` seeds one random stream per sample (so a sample never depends
on the others or on the set's length), `ToyFaces` renders sample i of a split as {"image", "frontal", "sketch",
"params"} with an optional in-memory cache, `ToyFacesTensors` is its torch view (torch imported on first use), and
`write_toyfaces` writes a split to PNG folders plus a params.jsonl.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Iterable, Optional

import numpy as np
from PIL import Image

from datamodules.toyfaces.painting import check_size, render_all
from datamodules.toyfaces.params import FaceParams, sample_params

SPLITS = {"train": 0, "val": 1, "test": 2}
DOMAIN_TAG = 7015  # mixed into every seed so that toy faces never share a random stream with other generators


def face_params(seed: int, split: str, index: int, max_yaw: float = 30.0) -> FaceParams:
    """The parameters of sample `index` of `split`: a pure function of its arguments."""
    if split not in SPLITS:
        raise ValueError(f"toy faces: expected split in {list(SPLITS)}, got {split!r}")
    if index < 0 or seed < 0:
        raise ValueError(f"toy faces: expected seed >= 0 and index >= 0, got seed={seed}, index={index}")
    return sample_params(np.random.default_rng([DOMAIN_TAG, int(seed), SPLITS[split], int(index)]), max_yaw)


class ToyFaces:
    """`n` toy faces of `size` px; item i = {"image" (posed, HxWx3 uint8), "frontal" (HxWx3 uint8), "sketch"
    (HxW uint8, of the posed face), "params" (FaceParams)}, determined by (seed, split, i). With `cache=True`
    every rendered item is kept in preallocated arrays; `arrays()` renders all of them at once."""

    KEYS = ("image", "frontal", "sketch")

    def __init__(self, n: int, size: int, seed: int = 0, split: str = "train", max_yaw: float = 30.0,
                 cache: bool = False):
        if split not in SPLITS:
            raise ValueError(f"toy faces: expected split in {list(SPLITS)}, got {split!r}")
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"toy faces: expected n >= 1 samples, got {n!r}")
        if not 0 <= max_yaw <= 90:
            raise ValueError(f"toy faces: expected max_yaw in [0, 90] degrees, got {max_yaw}")
        self.n, self.size, self.seed, self.split, self.max_yaw = int(n), check_size(size), int(seed), split, max_yaw
        self._cache: Optional[Dict[str, np.ndarray]] = None
        if cache:
            self._start_cache()

    def _start_cache(self) -> None:
        """Empty arrays for every item and a flag per item that says whether it is rendered yet."""
        s = self.size
        self._cache = {"image": np.zeros((self.n, s, s, 3), np.uint8),
                       "frontal": np.zeros((self.n, s, s, 3), np.uint8),
                       "sketch": np.zeros((self.n, s, s), np.uint8)}
        self._done = np.zeros(self.n, bool)

    def __len__(self) -> int:
        return self.n

    def params(self, index: int) -> FaceParams:
        return face_params(self.seed, self.split, self._index(index), self.max_yaw)

    def _index(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"toy faces: index {index} out of range for {self.n} samples")
        return i

    def render(self, index: int) -> Dict[str, np.ndarray]:
        return render_all(self.params(index), self.size)

    def _fill(self, i: int) -> None:
        for k, v in self.render(i).items():
            self._cache[k][i] = v
        self._done[i] = True

    def __getitem__(self, index: int) -> Dict[str, object]:
        i = self._index(index)
        if self._cache is None:
            item = self.render(i)
        else:
            if not self._done[i]:
                self._fill(i)
            item = {k: self._cache[k][i].copy() for k in self.KEYS}
        item["params"] = self.params(i)
        return item

    def arrays(self) -> Dict[str, np.ndarray]:
        """All samples as stacked arrays {"image": (n, H, W, 3), "frontal": (n, H, W, 3), "sketch": (n, H, W)}."""
        if self._cache is None:
            self._start_cache()
        for i in np.flatnonzero(~self._done):
            self._fill(int(i))
        return self._cache


class ToyFacesTensors:
    """A map-style torch view of `ToyFaces`: item i = {key: float tensor in [-1, 1], (C, H, W)} for `keys`
    (sketch has one channel). Torch is imported on first use only."""

    def __init__(self, faces: ToyFaces, keys: Iterable[str] = ("image",)):
        keys = tuple(keys)
        bad = [k for k in keys if k not in ToyFaces.KEYS]
        if bad or not keys:
            raise ValueError(f"toy faces: expected keys from {list(ToyFaces.KEYS)}, got {list(keys)}")
        self.faces, self.keys = faces, keys

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, index: int):
        import torch

        item = self.faces[index]
        out = {}
        for k in self.keys:
            a = item[k] if item[k].ndim == 3 else item[k][..., None]
            out[k] = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float() / 127.5 - 1.0
        return out


def write_toyfaces(root, n: int, size: int, seed: int = 0, split: str = "train", max_yaw: float = 30.0) -> Path:
    """Write `n` faces as PNGs: root/images, root/frontal, root/sketch (same file stems, e.g. 00042.png) and
    root/params.jsonl (one FaceParams per line, in index order)."""
    faces = ToyFaces(n, size, seed, split, max_yaw)
    root = Path(root)
    dirs = {"image": root / "images", "frontal": root / "frontal", "sketch": root / "sketch"}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    with open(root / "params.jsonl", "w") as f:
        for i in range(n):
            item = faces[i]
            for k, d in dirs.items():
                Image.fromarray(item[k]).save(d / f"{i:05d}.png")
            f.write(json.dumps(asdict(item["params"])) + "\n")
    return root
