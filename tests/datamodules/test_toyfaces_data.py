"""The `toyfaces` and `images` data kinds: tasks, channels, determinism, errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import build_datamodule
from datamodules.config import DataConfig, ToyFacesConfig
from datamodules.toyfaces import face_params, render_face, render_frontal, render_sketch
from datamodules.toyfaces_data import ToyFacesDataset


def toy_cfg(task="faces", **kw):
    base = dict(kind="toyfaces", preprocess="none", flip=False, batch_size=2, num_workers=0,
                toyfaces=ToyFacesConfig(task=task, size=32, n_train=4, n_val=3, seed=3, max_yaw=30.0))
    base.update(kw)
    return DataConfig(**base)


def as_tensor(img):
    img = img if img.ndim == 3 else img[..., None]
    return torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32)) / 127.5 - 1


def test_faces_task_gives_the_posed_face_as_both_sides():
    ds = ToyFacesDataset(toy_cfg("faces"), "train", train=False)
    item = ds[1]
    expected = as_tensor(render_face(face_params(3, "train", 1), 32))
    assert torch.allclose(item["B"], expected, atol=1e-6)
    assert torch.equal(item["A"], item["B"])
    assert item["A_path"] == "toyfaces/train/00001.png"
    assert len(ds) == 4 and len(ToyFacesDataset(toy_cfg("faces"), "val", train=False)) == 3


def test_sketch_and_frontalize_pair_the_right_renderings():
    sk = ToyFacesDataset(toy_cfg("sketch", input_nc=1), "val", train=False)[2]
    p = face_params(3, "val", 2)
    assert sk["A"].shape == (1, 32, 32) and sk["B"].shape == (3, 32, 32)
    assert torch.allclose(sk["A"], as_tensor(render_sketch(p, 32)), atol=1e-6)
    assert torch.allclose(sk["B"], as_tensor(render_face(p, 32)), atol=1e-6)

    fr = ToyFacesDataset(toy_cfg("frontalize"), "test", train=False)[0]
    p = face_params(3, "test", 0)
    assert torch.allclose(fr["A"], as_tensor(render_face(p, 32)), atol=1e-6)
    assert torch.allclose(fr["B"], as_tensor(render_frontal(p, 32)), atol=1e-6)
    if abs(p.yaw) > 1:
        assert not torch.equal(fr["A"], fr["B"])
    swapped = ToyFacesDataset(toy_cfg("frontalize", direction="BtoA"), "test", train=False)[0]
    assert torch.equal(swapped["A"], fr["B"]) and torch.equal(swapped["B"], fr["A"])


def test_sr_sources_are_degraded_and_repeatable_in_evaluation():
    cfg = toy_cfg("sr")
    cfg.degradation.factors = [4]
    a1 = ToyFacesDataset(cfg, "val", train=False)[0]
    a2 = ToyFacesDataset(cfg, "val", train=False)[0]
    assert torch.equal(a1["A"], a2["A"])
    assert not torch.equal(a1["A"], a1["B"])
    # x4 down and back up: much smoother than the target
    assert a1["A"].diff(dim=2).abs().mean() < 0.7 * a1["B"].diff(dim=2).abs().mean()
    with pytest.raises(ValueError, match="direction"):
        ToyFacesDataset(toy_cfg("sr", direction="BtoA"), "val", train=False)


def test_splits_differ_and_datamodule_batches():
    dm = build_datamodule(toy_cfg("faces"))
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    val = next(iter(dm.val_dataloader()))
    assert train["B"].shape == (2, 3, 32, 32) and train["B"].min() >= -1 and train["B"].max() <= 1
    assert not torch.equal(train["B"], val["B"])


@pytest.mark.parametrize("key,value,match", [("task", "cartoon", "data.toyfaces.task"),
                                             ("size", 1024, "data.toyfaces.size"),
                                             ("n_train", 0, "data.toyfaces.n_train"),
                                             ("max_yaw", 120.0, "data.toyfaces.max_yaw")])
def test_bad_toyfaces_options_name_the_key(key, value, match):
    cfg = toy_cfg()
    setattr(cfg.toyfaces, key, value)
    with pytest.raises(ValueError, match=match):
        build_datamodule(cfg)


def test_images_kind_serves_one_folder_as_both_sides(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    cfg = DataConfig(kind="images", root=str(tmp_path), preprocess="resize_and_crop", load_size=32, crop_size=32,
                     flip=True, batch_size=3, num_workers=0)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["B"].shape == (3, 3, 32, 32)
    assert torch.equal(batch["A"], batch["B"])
    with pytest.raises(FileNotFoundError, match="data.root"):
        build_datamodule(DataConfig(kind="images", root=str(tmp_path / "nope")))
