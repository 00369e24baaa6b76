"""datamodules.synthetic: the procedural label map -> facade set, in memory and written as files."""
import time

import numpy as np
import pytest
import torch

from datamodules import build_datamodule
from datamodules.config import DataConfig, SyntheticConfig
from datamodules.synthetic import LABELS, SIZES, make_pair, make_split, write_synthetic_dataset


def small(**kw):
    s = dict(size=32, n_train=6, n_val=3, seed=0)
    s.update(kw.pop("synthetic", {}))
    base = dict(kind="synthetic", batch_size=2, num_workers=0, preprocess="none", flip=False,
                synthetic=SyntheticConfig(**s))
    base.update(kw)
    return DataConfig(**base)


def psnr(x, y):
    return 10 * np.log10(255.0**2 / np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))


def test_deterministic_per_seed_and_split():
    a1, b1 = make_pair(0, "train", 3, 64)
    a2, b2 = make_pair(0, "train", 3, 64)
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2)
    assert not np.array_equal(make_pair(1, "train", 3, 64)[0], a1)
    assert not np.array_equal(make_pair(0, "train", 4, 64)[0], a1)
    assert not np.array_equal(make_pair(0, "val", 3, 64)[0], a1)  # splits draw from different streams
    assert np.array_equal(make_pair(0, "test", 3, 64)[1], make_pair(0, "val", 3, 64)[1])  # test = val


def test_splits_do_not_overlap():
    cfg = SyntheticConfig(size=32, n_train=50, n_val=20)
    train, val = make_split(cfg, "train")[0], make_split(cfg, "val")[0]
    assert train.shape == (50, 32, 32, 3) and val.shape == (20, 32, 32, 3)
    assert not any(np.array_equal(v, t) for v in val for t in train)


@pytest.mark.parametrize("size", SIZES)
def test_sizes_labels_and_rendering(size):
    a, b = make_pair(0, "train", 0, size)
    assert a.shape == b.shape == (size, size, 3) and a.dtype == b.dtype == np.uint8
    colours = {tuple(c) for c in a.reshape(-1, 3)}
    assert colours <= set(LABELS.values()) and len(colours) >= 5  # flat class colours
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 30  # the target is not the label map
    assert len({tuple(c) for c in b.reshape(-1, 3)}) > 50  # textured


def test_bad_size_and_counts():
    with pytest.raises(ValueError, match=r"data.synthetic.size: expected one of \[32, 64, 128, 256\], got 100"):
        make_pair(0, "train", 0, 100)
    with pytest.raises(ValueError, match="data.synthetic.n_val"):
        make_split(SyntheticConfig(n_val=0), "val")


def test_generation_is_fast():
    t0 = time.process_time()
    labels, photos = make_split(SyntheticConfig(size=64, n_train=400), "train")
    assert labels.shape == photos.shape == (400, 64, 64, 3)
    assert time.process_time() - t0 < 2.0


def test_mapping_is_learnable_and_not_trivial():
    """A per-class colour lookup fitted on the training split (the crudest learner) beats both demo baselines."""
    cfg = SyntheticConfig(size=64, n_train=60, n_val=16)
    (la, lb), (va, vb) = make_split(cfg, "train"), make_split(cfg, "val")
    key = lambda a: (a[..., 0].astype(np.int64) << 16) | (a[..., 1].astype(np.int64) << 8) | a[..., 2]  # noqa: E731
    k_train, k_val = key(la).ravel(), key(va).ravel()
    lookup = {k: lb.reshape(-1, 3)[k_train == k].mean(0) for k in np.unique(k_train)}
    predicted = np.stack([lookup[k] for k in k_val]).reshape(vb.shape)
    identity, mean_target = psnr(va, vb), psnr(np.broadcast_to(lb.mean(0), vb.shape), vb)
    assert psnr(predicted, vb) > max(identity, mean_target) + 2.0  # 17.4 vs 14.8 dB at seed 0


def test_dataset_batches():
    dm = build_datamodule(small(batch_size=4))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["A"].shape == batch["B"].shape == (4, 3, 32, 32) and batch["A"].dtype == torch.float32
    assert batch["A"].min() >= -1 and batch["B"].max() <= 1
    val = dm.dataset("val")
    assert len(dm.dataset("train")) == 6 and len(val) == 3 and val[1]["A_path"] == "synthetic/val/0001.png"
    a, b = make_pair(0, "val", 1, 32)
    assert torch.equal(val[1]["A"], torch.from_numpy(a).permute(2, 0, 1).float() / 127.5 - 1)
    assert torch.equal(val[1]["B"], torch.from_numpy(b).permute(2, 0, 1).float() / 127.5 - 1)
    test = dm.dataset("test")
    assert torch.equal(test[2]["B"], val[2]["B"])  # the test split is the validation split


def test_dataset_options():
    val = build_datamodule(small(direction="BtoA")).dataset("val")
    a, b = make_pair(0, "val", 0, 32)
    assert torch.equal(val[0]["A"], torch.from_numpy(b).permute(2, 0, 1).float() / 127.5 - 1)
    item = build_datamodule(small(input_nc=1, output_nc=1)).dataset("train")[0]
    assert item["A"].shape == item["B"].shape == (1, 32, 32)
    assert len(build_datamodule(small(max_dataset_size=2)).dataset("train")) == 2
    item = build_datamodule(small(preprocess="resize_and_crop", load_size=36, crop_size=24)).dataset("train")[0]
    assert item["A"].shape == (3, 24, 24)  # the usual pipeline applies when asked for
    train = build_datamodule(small(flip=True, synthetic=dict(n_train=1))).dataset("train")
    assert len({train[0]["A"].sum(1).flatten().tolist().__str__() for _ in range(12)}) == 2  # flips apply


@pytest.mark.parametrize("layout", ["aligned", "paired"])
def test_written_files_load_as_the_same_pairs(tmp_path, layout):
    c = small()
    mem = build_datamodule(c).dataset("val")
    root = write_synthetic_dataset(tmp_path / layout, c, layout=layout)
    files = build_datamodule(DataConfig(kind=layout, root=str(root), preprocess="none", flip=False,
                                        num_workers=0))
    val, test = files.dataset("val"), files.dataset("test")
    assert len(val) == len(test) == 3 and len(files.dataset("train")) == 6
    for i in range(3):
        assert torch.equal(val[i]["A"], mem[i]["A"]) and torch.equal(val[i]["B"], mem[i]["B"])
        assert torch.equal(test[i]["B"], mem[i]["B"])
    with pytest.raises(ValueError, match="layout: expected 'aligned' or 'paired'"):
        write_synthetic_dataset(tmp_path / "x", c, layout="folders")


@pytest.mark.parametrize("drop_last, sizes", [(False, [2, 2, 1]), (True, [2, 2])])
def test_drop_last_drops_only_the_partial_training_batch(drop_last, sizes):
    cfg = DataConfig(kind="synthetic", synthetic=SyntheticConfig(size=32, n_train=5, n_val=3), preprocess="none",
                     batch_size=2, num_workers=0, drop_last=drop_last)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    assert [len(b["A"]) for b in dm.train_dataloader()] == sizes
    assert [len(b["A"]) for b in dm.val_dataloader()] == [2, 1]  # evaluation sees every image
