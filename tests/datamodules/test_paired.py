"""Layouts, pairing, preprocessing and bad input of the paired data sets."""
import random

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import DataError, build_datamodule
from datamodules.config import DataConfig
from datamodules.io import BadImageError
from datamodules.synthetic import write_synthetic_dataset


def save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def rand_img(h, w, c=3, seed=0):
    a = np.random.default_rng(seed).integers(0, 255, (h, w, c), dtype=np.uint8)
    return a[:, :, 0] if c == 1 else a


def cfg(**kw):
    base = dict(batch_size=2, num_workers=0, preprocess="none", flip=False, size_multiple=4)
    base.update(kw)
    return DataConfig(**base)


def first(dm, split="train"):
    dm.setup("fit" if split == "train" else "test")
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
    return next(iter(loader))


def test_aligned_layout_and_direction(tmp_path):
    left, right = np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 255, np.uint8)
    for split in ("train", "val"):
        save(tmp_path / split / "0.png", np.concatenate([left, right], 1))
    b = first(build_datamodule(cfg(kind="aligned", root=str(tmp_path), batch_size=1)))
    assert b["A"].shape == (1, 3, 16, 16) and b["A"].max() == -1 and b["B"].min() == 1
    b = first(build_datamodule(cfg(kind="aligned", root=str(tmp_path), batch_size=1, direction="BtoA")))
    assert b["A"].min() == 1 and b["B"].max() == -1
    assert b["A_path"][0].endswith("0.png")


def test_aligned_odd_width_names_the_file(tmp_path):
    save(tmp_path / "train" / "odd.png", rand_img(8, 17))
    dm = build_datamodule(cfg(kind="aligned", root=str(tmp_path)))
    with pytest.raises(DataError, match=r"odd.png.*even width.*17x8"):
        dm.dataset("train")[0]


def test_paired_by_stem_not_by_order(tmp_path):
    stems = [f"img{i}" for i in range(5)]
    for i, s in enumerate(stems):
        save(tmp_path / "A" / f"{s}.png", np.full((8, 8, 3), i * 10, np.uint8))
    shuffled = stems[:]
    random.Random(1).shuffle(shuffled)
    for s in shuffled:  # other extension and written in another order
        save(tmp_path / "B" / f"{s}.jpg", np.full((8, 8, 3), int(s[3:]) * 10, np.uint8))
    ds = build_datamodule(cfg(kind="paired", root=str(tmp_path))).dataset("train")
    for i in range(len(ds)):
        item = ds[i]
        assert torch.allclose(item["A"], item["B"], atol=2 / 127.5)


def test_missing_partners_are_listed(tmp_path):
    for s in ("a", "b", "c"):
        save(tmp_path / "A" / f"{s}.png", rand_img(8, 8))
    save(tmp_path / "B" / "a.png", rand_img(8, 8))
    save(tmp_path / "B" / "z.png", rand_img(8, 8))
    with pytest.raises(DataError, match=r"only in A/: b, c; only in B/: z"):
        build_datamodule(cfg(kind="paired", root=str(tmp_path))).dataset("train")


def test_truncated_image_skip_and_count_or_fail(tmp_path):
    for i in range(3):
        save(tmp_path / "train" / f"{i}.png", rand_img(8, 16, seed=i))
    data = (tmp_path / "train" / "1.png").read_bytes()
    (tmp_path / "train" / "1.png").write_bytes(data[:40])
    ds = build_datamodule(cfg(kind="aligned", root=str(tmp_path))).dataset("train")
    with pytest.warns(UserWarning, match="1.png"):
        item = ds[1]
    assert ds.n_bad == 1 and item["A"].shape == (3, 8, 8) and item["A_path"].endswith("2.png")
    ds = build_datamodule(cfg(kind="aligned", root=str(tmp_path), on_bad_image="fail")).dataset("train")
    with pytest.raises(BadImageError, match="1.png"):
        ds[1]


def test_channel_conversions(tmp_path):
    save(tmp_path / "A" / "x.png", rand_img(8, 8, 1))  # grayscale source
    (tmp_path / "B").mkdir()
    Image.fromarray(rand_img(8, 8, 3)).convert("P").save(tmp_path / "B" / "x.png")  # palette target
    b = first(build_datamodule(cfg(kind="paired", root=str(tmp_path), input_nc=3, output_nc=1, batch_size=1)))
    assert b["A"].shape == (1, 3, 8, 8) and b["B"].shape == (1, 1, 8, 8)
    assert torch.equal(b["A"][0, 0], b["A"][0, 1])  # gray replicated to RGB


def test_non_square_kept_and_rounded(tmp_path):
    save(tmp_path / "A" / "x.png", rand_img(30, 45))
    save(tmp_path / "B" / "x.png", rand_img(30, 45))
    b = first(build_datamodule(cfg(kind="paired", root=str(tmp_path), batch_size=1, size_multiple=4)))
    assert b["A"].shape == (1, 3, 32, 44)


def test_same_random_geometry_on_both_images(tmp_path):
    img = rand_img(40, 50)
    save(tmp_path / "A" / "x.png", img)
    save(tmp_path / "B" / "x.png", img)
    ds = build_datamodule(cfg(kind="paired", root=str(tmp_path), preprocess="resize_and_crop", load_size=36,
                              crop_size=24, flip=True)).dataset("train")
    outs = [ds[0] for _ in range(12)]
    assert all(torch.equal(o["A"], o["B"]) for o in outs)
    assert len({o["A"].sum().item() for o in outs}) > 1  # the geometry really is random


def test_colour_jitter_only_on_source(tmp_path):
    img = rand_img(16, 16)
    save(tmp_path / "A" / "x.png", img)
    save(tmp_path / "B" / "x.png", img)
    ds = build_datamodule(cfg(kind="paired", root=str(tmp_path), color_jitter=0.5)).dataset("train")
    item = ds[0]
    ref = torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(item["B"], ref) and not torch.allclose(item["A"], ref, atol=0.05)


@pytest.mark.parametrize("name", ["downsample", "sketch", "grayscale", "blur", "jpeg", "noise"])
def test_single_folder_degradations(tmp_path, name):
    from datamodules.synthetic import make_pair

    save(tmp_path / "x.png", make_pair(0, "train", 0, 64)[1])
    c = cfg(kind="single", root=str(tmp_path), batch_size=1, input_nc=1 if name == "sketch" else 3)
    c.degradation.name = name
    ds = build_datamodule(c).dataset("val")
    item, again = ds[0], ds[0]
    assert item["A"].shape == (c.input_nc, 64, 64) and item["B"].shape == (3, 64, 64)
    assert torch.equal(item["A"], again["A"])  # evaluation degradations are the same every epoch
    src = item["A"] if c.input_nc == 3 else item["A"].expand(3, -1, -1)
    assert (src - item["B"]).abs().mean() > 0.005


def test_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_datamodule(cfg(kind="aligned", root=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="data.kind"):
        build_datamodule(cfg(kind="folders", root=str(tmp_path)))
    with pytest.raises(ValueError, match="data.direction"):
        build_datamodule(cfg(kind="aligned", root=str(tmp_path), direction="AB"))
    c = cfg(kind="single", root=str(tmp_path))
    c.degradation.factors = [64]
    save(tmp_path / "x.png", rand_img(8, 8))
    with pytest.raises(ValueError, match="factors"):
        build_datamodule(c).dataset("train")


def test_synthetic_files_roundtrip_through_layouts(tmp_path):
    c = cfg(kind="synthetic")
    c.synthetic.size, c.synthetic.n_train, c.synthetic.n_val = 32, 3, 2
    mem = build_datamodule(c).dataset("val")
    for layout in ("aligned", "paired"):
        root = write_synthetic_dataset(tmp_path / layout, c, layout=layout)
        files = build_datamodule(cfg(kind=layout, root=str(root))).dataset("val")
        assert len(files) == 2
        assert torch.allclose(files[1]["B"], mem[1]["B"]) and torch.allclose(files[1]["A"], mem[1]["A"])
