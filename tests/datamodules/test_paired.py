"""Layouts, pairing, bad input, config checks and loaders of the file-based data sets (datamodules.paired and the
data module built by datamodules.build_datamodule)."""
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from datamodules import DATASETS, DataError, build_datamodule
from datamodules.config import DataConfig
from datamodules.io import BadImageError


def save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def rand_img(h, w, c=3, seed=0):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    return a[:, :, 0] if c == 1 else a


def flat(value, h=8, w=8):
    return np.full((h, w, 3), value, np.uint8)


def cfg(**kw):
    # val_fraction 0: every split reads the whole folder (these tests are about reading and pairing; the held-out
    # validation images are tested on their own below)
    base = dict(batch_size=2, num_workers=0, preprocess="none", flip=False, size_multiple=4, val_fraction=0.0)
    base.update(kw)
    return DataConfig(**base)


def first(dm, split="train"):
    dm.setup("fit" if split in ("train", "val") else "test")
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
    return next(iter(loader))


def value(t):
    """The uint8 value of a flat image tensor in [-1, 1]."""
    return round(((t.mean().item() + 1) * 127.5))


def test_registry_names_every_kind():
    assert set(DATASETS) == {"aligned", "paired", "single", "synthetic", "unaligned", "synthetic_unpaired", "toyfaces",
                             "images"}


def test_aligned_layout_and_direction(tmp_path):
    for split in ("train", "val"):
        save(tmp_path / split / "0.png", np.concatenate([flat(0, 16, 16), flat(255, 16, 16)], 1))
    b = first(build_datamodule(cfg(kind="aligned", root=str(tmp_path), batch_size=1)))
    assert b["A"].shape == (1, 3, 16, 16) and b["A"].max() == -1 and b["B"].min() == 1
    assert b["A"].dtype == torch.float32 and b["A_path"] == [str(tmp_path / "train" / "0.png")]
    b = first(build_datamodule(cfg(kind="aligned", root=str(tmp_path), batch_size=1, direction="BtoA")))
    assert b["A"].min() == 1 and b["B"].max() == -1


def test_aligned_channels(tmp_path):
    save(tmp_path / "train" / "0.png", np.concatenate([flat(60, 8, 8), rand_img(8, 8)], 1))
    item = build_datamodule(cfg(kind="aligned", root=str(tmp_path), input_nc=1)).dataset("train")[0]
    assert item["A"].shape == (1, 8, 8) and item["B"].shape == (3, 8, 8) and value(item["A"]) == 60


def test_aligned_odd_width(tmp_path):
    """As the reference: B gets the extra column and resize_and_crop evens them out; other modes name the file."""
    img = rand_img(8, 17)
    save(tmp_path / "train" / "odd.png", img)
    ds = build_datamodule(cfg(kind="aligned", root=str(tmp_path))).dataset("train")
    with pytest.raises(DataError, match=r"odd.png.*odd width 17.*8 and 9 px.*'none'"):
        ds[0]
    resized = build_datamodule(cfg(kind="aligned", root=str(tmp_path), preprocess="resize_and_crop", load_size=8,
                                   crop_size=8, flip=False)).dataset("train")[0]
    assert resized["A"].shape == resized["B"].shape == (3, 8, 8)
    expected_b = np.asarray(Image.fromarray(img[:, 8:]).resize((8, 8), Image.BICUBIC)) / 127.5 - 1
    assert np.allclose(resized["B"].permute(1, 2, 0).numpy(), expected_b, atol=1e-5)


def test_aligned_split_folders_and_fallbacks(tmp_path):
    save(tmp_path / "train" / "t.png", rand_img(8, 16))
    save(tmp_path / "test" / "only_test.png", rand_img(8, 16))
    dm = build_datamodule(cfg(kind="aligned", root=str(tmp_path)))
    assert dm.dataset("val")[0]["A_path"].endswith("only_test.png")  # no val/: validation uses test/
    save(tmp_path / "valid" / "v.png", rand_img(8, 16))
    dm = build_datamodule(cfg(kind="aligned", root=str(tmp_path), val_split="valid"))
    assert dm.dataset("val")[0]["A_path"].endswith("v.png")
    assert dm.dataset("test")[0]["A_path"].endswith("only_test.png")
    with pytest.raises(DataError, match=r"'train' split in .*looked for train"):
        build_datamodule(cfg(kind="aligned", root=str(tmp_path / "valid"))).dataset("train")


def test_paired_by_stem_not_by_order(tmp_path):
    # sorted by name, A/ reads a, a.q, b... while B/ reads a.q, a, b...: only stems pair them right
    stems = {"a": 10, "a.q": 20, "b": 30, "c": 40, "d": 50}
    ext_b = {"a": ".tif", "a.q": ".png", "b": ".jpg", "c": ".bmp", "d": ".png"}
    order = list(stems)
    random.Random(1).shuffle(order)  # written to disk in another order than listed
    for s in order:
        save(tmp_path / "A" / f"{s}.png", flat(stems[s]))
        save(tmp_path / "B" / f"{s}{ext_b[s]}", flat(stems[s] + 100))
    assert sorted(p.name for p in (tmp_path / "A").iterdir())[:2] == ["a.png", "a.q.png"]
    assert sorted(p.name for p in (tmp_path / "B").iterdir())[:2] == ["a.q.png", "a.tif"]
    ds = build_datamodule(cfg(kind="paired", root=str(tmp_path))).dataset("train")
    assert len(ds) == 5
    for i in range(len(ds)):
        item = ds[i]
        assert abs(value(item["B"]) - value(item["A"]) - 100) <= 1, item["A_path"]


def test_paired_direction_swaps_folders(tmp_path):
    save(tmp_path / "A" / "x.png", flat(10))
    save(tmp_path / "B" / "x.png", flat(200))
    item = build_datamodule(cfg(kind="paired", root=str(tmp_path), direction="BtoA")).dataset("train")[0]
    assert value(item["A"]) == 200 and value(item["B"]) == 10 and item["A_path"].endswith("B/x.png")


def test_missing_partners_are_listed(tmp_path):
    for s in ("a", "b", "c"):
        save(tmp_path / "A" / f"{s}.png", rand_img(8, 8))
    save(tmp_path / "B" / "a.png", rand_img(8, 8))
    save(tmp_path / "B" / "z.png", rand_img(8, 8))
    with pytest.raises(DataError, match=r"without a partner.*only in A/: b, c; only in B/: z"):
        build_datamodule(cfg(kind="paired", root=str(tmp_path))).dataset("train")


def test_duplicate_stems_and_size_mismatch_are_errors(tmp_path):
    save(tmp_path / "A" / "x.png", rand_img(8, 8))
    save(tmp_path / "A" / "x.jpg", rand_img(8, 8))
    save(tmp_path / "B" / "x.png", rand_img(8, 8))
    with pytest.raises(DataError, match=r"share the stem 'x'"):
        build_datamodule(cfg(kind="paired", root=str(tmp_path))).dataset("train")
    (tmp_path / "A" / "x.jpg").unlink()
    save(tmp_path / "B" / "x.png", rand_img(8, 12))
    ds = build_datamodule(cfg(kind="paired", root=str(tmp_path))).dataset("train")
    with pytest.raises(DataError, match=r"A/x.png is 8x8 but its partner .*B/x.png is 12x8"):
        ds[0]


def test_paired_split_folders(tmp_path):
    for split, v in (("train", 1), ("val", 2)):
        save(tmp_path / split / "A" / "x.png", flat(v))
        save(tmp_path / split / "B" / "x.png", flat(v))
    dm = build_datamodule(cfg(kind="paired", root=str(tmp_path)))
    assert value(dm.dataset("train")[0]["A"]) == 1 and value(dm.dataset("val")[0]["A"]) == 2
    assert value(dm.dataset("test")[0]["A"]) == 2  # no test/: the test split is the validation one


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_image_skipped_and_counted(tmp_path, fmt):
    for i in range(3):
        save(tmp_path / "train" / f"{i}.{fmt}", rand_img(16, 32, seed=i))
    data = (tmp_path / "train" / f"1.{fmt}").read_bytes()
    (tmp_path / "train" / f"1.{fmt}").write_bytes(data[: len(data) // 2])
    ds = build_datamodule(cfg(kind="aligned", root=str(tmp_path))).dataset("train")
    with pytest.warns(UserWarning, match=f"1.{fmt}.*data.on_bad_image: skip"):
        item = ds[1]
    assert ds.n_bad == 1 and item["A"].shape == (3, 16, 16) and item["A_path"].endswith(f"2.{fmt}")
    ds[1]
    assert ds.n_bad == 1  # files are counted once
    loader = DataLoader(ds, batch_size=3)
    assert next(iter(loader))["A"].shape == (3, 3, 16, 16)  # batches keep their size


def test_truncated_image_fails_naming_it(tmp_path):
    for i in range(2):
        save(tmp_path / "A" / f"{i}.png", rand_img(8, 8))
        save(tmp_path / "B" / f"{i}.png", rand_img(8, 8))
    (tmp_path / "B" / "1.png").write_bytes((tmp_path / "B" / "1.png").read_bytes()[:60])
    ds = build_datamodule(cfg(kind="paired", root=str(tmp_path), on_bad_image="fail")).dataset("train")
    ds[0]
    with pytest.raises(BadImageError, match=r"B/1.png"):
        ds[1]


def test_all_images_unreadable(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "0.png").write_bytes(b"junk")
    ds = build_datamodule(cfg(kind="aligned", root=str(tmp_path))).dataset("train")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="all unreadable"):
        ds[0]


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
    assert b["A"].shape == b["B"].shape == (1, 3, 32, 44)


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
    dm = build_datamodule(cfg(kind="paired", root=str(tmp_path), color_jitter=0.5))
    item = dm.dataset("train")[0]
    ref = torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(item["B"], ref) and not torch.allclose(item["A"], ref, atol=0.05)
    assert torch.allclose(dm.dataset("val")[0]["A"], ref)  # evaluation: no jitter


def test_max_dataset_size(tmp_path):
    for i in range(5):
        save(tmp_path / "train" / f"{i}.png", rand_img(8, 16))
    assert len(build_datamodule(cfg(kind="aligned", root=str(tmp_path), max_dataset_size=3)).dataset("train")) == 3


def test_loaders(tmp_path):
    for split in ("train", "val"):
        for i in range(5):
            save(tmp_path / split / f"{i}.png", np.concatenate([flat(i * 10), flat(i * 10 + 1)], 1))
    dm = build_datamodule(cfg(kind="aligned", root=str(tmp_path), batch_size=2, num_workers=0))
    dm.setup("fit")
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert isinstance(train.sampler, RandomSampler) and isinstance(val.sampler, SequentialSampler)
    assert not train.drop_last and len(train) == 3  # 5 images, batch 2: the last batch of 1 is kept
    assert train.pin_memory == torch.cuda.is_available()
    names = [n for batch in val for n in batch["A_path"]]
    assert names == [str(tmp_path / "val" / f"{i}.png") for i in range(5)]
    dm.setup("test")
    assert [n for b in dm.test_dataloader() for n in b["A_path"]] == names  # test falls back to val
    assert [n for b in dm.predict_dataloader() for n in b["A_path"]] == names
    serial = build_datamodule(cfg(kind="aligned", root=str(tmp_path), serial_batches=True)).train_dataloader()
    assert isinstance(serial.sampler, SequentialSampler)
    workers = build_datamodule(cfg(kind="aligned", root=str(tmp_path), num_workers=64)).train_dataloader()
    assert 0 <= workers.num_workers < (__import__("os").cpu_count() or 1)
    assert workers.persistent_workers == (workers.num_workers > 0)


def test_loader_workers_draw_different_augmentations(tmp_path):
    """Workers forked from one process must not repeat each other's crops and flips, nor the last epoch's."""
    for i in range(4):
        save(tmp_path / "train" / f"{i}.png", np.concatenate([rand_img(64, 64)] * 2, 1))
    ds = build_datamodule(cfg(kind="aligned", root=str(tmp_path), preprocess="crop", crop_size=24,
                              flip=True)).dataset("train")
    torch.manual_seed(0)
    loader = DataLoader(ds, batch_size=1, num_workers=2)
    crops = [batch["A"].sum().item() for _ in range(2) for batch in loader]
    assert len(set(crops)) == 8


@pytest.mark.parametrize("kw, error, match", [
    (dict(kind="folders"), ValueError, r"data.kind: expected one of \['aligned', 'paired', 'single', 'synthetic', "),
    (dict(direction="AB"), ValueError, "data.direction: expected 'AtoB' or 'BtoA', got 'AB'"),
    (dict(on_bad_image="ignore"), ValueError, "data.on_bad_image"),
    (dict(preprocess="zoom"), ValueError, "data.preprocess: expected one of"),
    (dict(input_nc=4), ValueError, "data.input_nc: expected 1 or 3, got 4"),
    (dict(batch_size=0), ValueError, "data.batch_size"),
    (dict(max_dataset_size=0), ValueError, "data.max_dataset_size"),
    (dict(kind="single", degradation=dict(name="swirl")), ValueError, "data.degradation.name"),
    (dict(kind="synthetic", synthetic=dict(size=100)), ValueError, "data.synthetic.size"),
    (dict(root=None), ValueError, "data.root must be set"),
])
def test_config_errors_name_the_key(tmp_path, kw, error, match):
    from datamodules.config import DegradationConfig, SyntheticConfig

    kw = {"kind": "aligned", "root": str(tmp_path), **kw}
    if "degradation" in kw:
        kw["degradation"] = DegradationConfig(**kw["degradation"])
    if "synthetic" in kw:
        kw["synthetic"] = SyntheticConfig(**kw["synthetic"])
    with pytest.raises(error, match=match):
        build_datamodule(cfg(**kw))  # before any file is read


def test_missing_root_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.root: folder not found: .*nowhere"):
        build_datamodule(cfg(kind="aligned", root=str(tmp_path / "nowhere")))
    save(tmp_path / "A" / "x.png", rand_img(8, 8))
    with pytest.raises(FileNotFoundError, match=r"image folder not found: .*B"):
        build_datamodule(cfg(kind="paired", root=str(tmp_path))).dataset("train")


def test_a_folder_without_splits_holds_out_validation_images(tmp_path):
    """A paired folder with no split folders used to validate (and pick the best checkpoint) on the very images it
    trained on: now data.val_fraction of them, a fixed seeded choice, validate and test and never train."""
    for i in range(20):
        save(tmp_path / "A" / f"{i:02d}.png", flat(i))
        save(tmp_path / "B" / f"{i:02d}.png", flat(i + 100))
    dm = build_datamodule(cfg(kind="paired", root=str(tmp_path), val_fraction=0.1))
    train, val, test = (dm.dataset(s) for s in ("train", "val", "test"))
    names = lambda ds: {p[0].name for p in ds.pairs}  # noqa: E731
    assert len(val) == 2 and len(train) == 18 and names(val) == names(test)
    assert not names(val) & names(train) and len(names(val) | names(train)) == 20
    again = build_datamodule(cfg(kind="paired", root=str(tmp_path), val_fraction=0.1))
    assert names(again.dataset("val")) == names(val)  # the same images in every run
    assert not dm.validates_on_training_data()
    assert dm.validation_source() == f"2 samples held out from {tmp_path} (data.val_fraction 0.1) (18 train)"

    single = build_datamodule(cfg(kind="single", root=str(tmp_path / "B"), val_fraction=0.25))
    assert len(single.dataset("val")) == 5 and len(single.dataset("train")) == 15

    whole = build_datamodule(cfg(kind="paired", root=str(tmp_path), val_fraction=0.0))
    assert whole.validates_on_training_data() and len(whole.dataset("val")) == 20
    assert "the training images" in whole.validation_source()


def test_split_folders_are_used_as_they_are(tmp_path):
    for split, n in (("train", 6), ("val", 3)):
        for i in range(n):
            save(tmp_path / split / "A" / f"{i}.png", flat(i))
            save(tmp_path / split / "B" / f"{i}.png", flat(i))
    dm = build_datamodule(cfg(kind="paired", root=str(tmp_path), val_fraction=0.5))
    assert len(dm.dataset("train")) == 6 and len(dm.dataset("val")) == 3
    assert dm.validation_source() == f"3 samples from {tmp_path / 'val'} (6 train)"


def test_one_image_cannot_be_held_out(tmp_path):
    save(tmp_path / "A" / "x.png", flat(1))
    save(tmp_path / "B" / "x.png", flat(2))
    with pytest.raises(DataError, match="nothing can be held out.*data.val_fraction=0"):
        build_datamodule(cfg(kind="paired", root=str(tmp_path), val_fraction=0.1)).dataset("train")


def test_val_fraction_is_checked():
    with pytest.raises(ValueError, match="data.val_fraction"):
        build_datamodule(cfg(kind="synthetic", val_fraction=1.0))
