"""Label-map sources (seg-to-face): read as class indices, resized nearest (never inventing classes), one-hot."""
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import build_datamodule
from datamodules.config import DataConfig
from datamodules.io import DataError


def write_pairs(root, n=3, size=24, label_nc=5, mode="P"):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(n):
            labels = np.zeros((size, size), np.uint8)
            labels[size // 4: 3 * size // 4, size // 3:] = 1 + i % (label_nc - 1)  # a block of one class
            labels[:2] = label_nc - 1
            img = Image.fromarray(labels, mode="L")
            if mode == "P":
                img = img.convert("P")
                img.putpalette(list(rng.integers(0, 255, 768, dtype=np.uint8)))  # colours must not matter
            elif mode == "RGB":
                img = img.convert("RGB")
            (root / split / "A").mkdir(parents=True, exist_ok=True)
            (root / split / "B").mkdir(parents=True, exist_ok=True)
            img.save(root / split / "A" / f"{i:03d}.png")
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / split / "B" / f"{i:03d}.png")
    return root


def config(root, **kw):
    base = dict(kind="paired", root=str(root), label_nc=5, preprocess="resize_and_crop", load_size=20, crop_size=16,
                size_multiple=4, batch_size=3, num_workers=0)
    return DataConfig(**{**base, **kw})


@pytest.mark.parametrize("mode", ["P", "L"])
def test_label_maps_are_one_hot_and_resized_nearest(tmp_path, mode):
    dm = build_datamodule(config(write_pairs(tmp_path, mode=mode)))
    dm.setup("fit")
    for split in ("train", "val"):
        batch = next(iter(dm.train_dataloader() if split == "train" else dm.val_dataloader()))
        a, b = batch["A"], batch["B"]
        assert a.shape == (3, 5, 16, 16) and b.shape == (3, 3, 16, 16)
        assert set(a.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(a.sum(1), torch.ones(3, 16, 16))  # exactly one class per pixel: nothing interpolated
    val = next(iter(dm.val_dataloader()))["A"]
    # the top rows are class 4 and the block of sample 1 is class 2: both survive the resize
    assert val[0, 4, 0].all() and val[1, 2].sum() > 0 and val[1, 3].sum() == 0


def test_bad_label_maps_are_errors(tmp_path):
    dm = build_datamodule(config(write_pairs(tmp_path / "few"), label_nc=3, on_bad_image="fail"))
    dm.setup("fit")
    with pytest.raises(DataError, match="class index 4 in a label map, but data.label_nc is 3"):
        next(iter(dm.val_dataloader()))
    dm = build_datamodule(config(write_pairs(tmp_path / "rgb", mode="RGB"), on_bad_image="fail"))
    dm.setup("fit")
    with pytest.raises(Exception, match="expected a label map of class indices"):
        next(iter(dm.val_dataloader()))
    with pytest.raises(ValueError, match="data.label_nc"):
        build_datamodule(config(tmp_path, kind="single"))
