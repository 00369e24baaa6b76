"""Unpaired data: the reference unaligned layout (pairing, lengths, independent transforms, bad input) and the
synthetic day/night set (seeded, disjoint training scenes, hidden truth in evaluation)."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import build_datamodule
from datamodules.config import DataConfig
from datamodules.io import DataError
from datamodules.unaligned import SyntheticUnpairedDataset, UnalignedDataset, make_scene, write_unaligned_dataset


def write_side(folder, n, value_of, size=(20, 16)):
    """n images whose constant grey value identifies them."""
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((size[1], size[0], 3), value_of(i), np.uint8)).save(folder / f"{i:03d}.png")


@pytest.fixture
def root(tmp_path):
    write_side(tmp_path / "trainA", 3, lambda i: 10 + i)
    write_side(tmp_path / "trainB", 5, lambda i: 100 + i)
    write_side(tmp_path / "testA", 2, lambda i: 50 + i)
    write_side(tmp_path / "testB", 2, lambda i: 150 + i)
    return tmp_path


def cfg_for(root, **kw):
    return DataConfig(kind="unaligned", root=str(root), preprocess="none", flip=False, size_multiple=4,
                      num_workers=0, **kw)


def grey(t):
    return int(round((float(t.mean()) + 1) * 127.5))


def test_length_and_serial_pairing(root):
    ds = UnalignedDataset(cfg_for(root, serial_batches=True), "train", train=True)
    assert len(ds) == 5  # max(len A, len B)
    items = [ds[i] for i in range(5)]
    assert [grey(x["A"]) for x in items] == [10, 11, 12, 10, 11]  # A cycles
    assert [grey(x["B"]) for x in items] == [100, 101, 102, 103, 104]
    assert items[0]["A"].shape == (3, 16, 20) and items[0]["B_path"].endswith("trainB/000.png")
    assert not any(x["paired"] for x in items)


def test_random_pairing_follows_torch_seed(root):
    ds = UnalignedDataset(cfg_for(root), "train", train=True)

    def draw(seed):
        torch.manual_seed(seed)
        return [grey(ds[0]["B"]) for _ in range(12)]

    assert draw(0) == draw(0)
    assert len(set(draw(0))) > 1 and set(draw(0)) <= set(range(100, 105))
    assert draw(0) != draw(1)


def test_evaluation_is_serial_and_uses_test_folders(root):
    ds = UnalignedDataset(cfg_for(root), "val", train=False)  # no valA/valB: falls back to testA/testB
    assert [(grey(ds[i]["A"]), grey(ds[i]["B"])) for i in range(len(ds))] == [(50, 150), (51, 151)]


def test_direction_btoa_swaps_the_folders(root):
    ds = UnalignedDataset(cfg_for(root, direction="BtoA", serial_batches=True), "train", train=True)
    assert grey(ds[0]["A"]) == 100 and grey(ds[0]["B"]) == 10
    # as the reference, trainA is walked in order and trainB drawn at random, whichever side is the source
    ds = UnalignedDataset(cfg_for(root, direction="BtoA"), "train", train=True)
    torch.manual_seed(0)
    items = [ds[i] for i in range(len(ds))]
    assert [grey(x["B"]) for x in items] == [10, 11, 12, 10, 11]
    assert set(grey(x["A"]) for x in items) <= set(range(100, 105)) and len({grey(x["A"]) for x in items}) > 1


def test_each_side_gets_its_own_geometry(tmp_path):
    # a left/right gradient: a flip of one side shows as a reversed ramp; with independent draws the two sides
    # disagree on some samples
    ramp = np.repeat(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], 32, 0).repeat(3, 2)
    for side in ("trainA", "trainB", "testA", "testB"):
        (tmp_path / side).mkdir()
        Image.fromarray(ramp).save(tmp_path / side / "0.png")
    ds = UnalignedDataset(DataConfig(kind="unaligned", root=str(tmp_path), preprocess="none", flip=True,
                                     num_workers=0), "train", train=True)
    torch.manual_seed(0)
    flips = [(bool(x["A"][0, 0, 0] > 0), bool(x["B"][0, 0, 0] > 0)) for x in (ds[0] for _ in range(40))]
    assert any(a != b for a, b in flips) and any(a == b for a, b in flips)


def test_missing_or_empty_folders_are_clear_errors(root, tmp_path):
    shutil.rmtree(root / "trainB")
    with pytest.raises(DataError, match="trainB"):
        UnalignedDataset(cfg_for(root), "train", train=True)
    (root / "trainB").mkdir()
    with pytest.raises(DataError, match=r"no images .*trainB"):
        UnalignedDataset(cfg_for(root), "train", train=True)
    with pytest.raises(FileNotFoundError, match="data.root"):
        build_datamodule(cfg_for(tmp_path / "nowhere"))


def test_unreadable_image_is_skipped_or_fails(root):
    (root / "trainB" / "002.png").write_bytes(b"not a png")
    ds = UnalignedDataset(cfg_for(root, serial_batches=True), "train", train=True)
    with pytest.warns(UserWarning, match="002.png"):
        assert grey(ds[2]["B"]) == 103  # the next readable image of the same side
    assert ds.n_bad == 1
    strict = UnalignedDataset(cfg_for(root, serial_batches=True, on_bad_image="fail"), "train", train=True)
    with pytest.raises(ValueError, match="002.png"):
        strict[2]


# ---- the synthetic day/night set ---------------------------------------------------------------------------------
def synthetic_cfg(**kw):
    cfg = DataConfig(kind="synthetic_unpaired", preprocess="none", flip=False, num_workers=0, **kw)
    cfg.synthetic.size, cfg.synthetic.n_train, cfg.synthetic.n_val = 32, 6, 3
    return cfg


def test_scenes_are_seeded_and_night_differs_from_day():
    day, night = make_scene(0, "train", 3, 32)
    again = make_scene(0, "train", 3, 32)
    assert np.array_equal(day, again[0]) and np.array_equal(night, again[1])
    assert not np.array_equal(day, make_scene(1, "train", 3, 32)[0])
    assert night.mean() < day.mean() - 30  # darker
    assert np.abs(day.astype(int) - night.astype(int)).mean() > 40


def test_training_sides_come_from_disjoint_scenes():
    ds = SyntheticUnpairedDataset(synthetic_cfg(), "train", train=True)
    assert len(ds) == 6 and not ds.paired
    nights_of_a = {make_scene(0, "train", i, 32)[1].tobytes() for i in range(6)}
    days_of_b = {make_scene(0, "train", 6 + i, 32)[0].tobytes() for i in range(6)}
    b_images = {img.tobytes() for img in ds.images["B"]}
    assert not nights_of_a & b_images  # no A scene appears at night in training
    assert b_images == {make_scene(0, "train", 6 + i, 32)[1].tobytes() for i in range(6)}
    assert not days_of_b & {img.tobytes() for img in ds.images["A"]}


def test_evaluation_returns_the_hidden_truth():
    ds = SyntheticUnpairedDataset(synthetic_cfg(), "val", train=False)
    item = ds[1]
    day, night = make_scene(0, "val", 1, 32)
    assert item["paired"] is True
    torch.testing.assert_close(item["A"], torch.from_numpy(day).permute(2, 0, 1).float() / 127.5 - 1)
    torch.testing.assert_close(item["B"], torch.from_numpy(night).permute(2, 0, 1).float() / 127.5 - 1)
    dm = build_datamodule(synthetic_cfg(batch_size=2))
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["A"].shape == (2, 3, 32, 32) and batch["paired"].tolist() == [True, True]
    with pytest.raises(ValueError, match="input_nc"):
        SyntheticUnpairedDataset(synthetic_cfg(input_nc=1), "val", train=False)


def test_written_files_load_as_unaligned(tmp_path):
    write_unaligned_dataset(tmp_path, synthetic_cfg())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["testA", "testB", "trainA", "trainB"]
    ds = UnalignedDataset(cfg_for(tmp_path), "test", train=False)
    day, night = make_scene(0, "test", 0, 32)
    assert np.array_equal(np.array(Image.open(tmp_path / "testB" / "0000.png")), night)
    assert ds[0]["A"].shape == (3, 32, 32)
