"""datamodules.degrade: every degradation runs and changes the image; options are checked; `single` sets use them."""
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import build_datamodule
from datamodules.config import DataConfig, DegradationConfig
from datamodules.degrade import DEGRADATIONS, check_degradation
from datamodules.synthetic import make_pair

PHOTO = make_pair(0, "train", 0, 64)[1]  # a textured 64x64 RGB image with edges


@pytest.mark.parametrize("name", list(DEGRADATIONS))
@pytest.mark.parametrize("channels", [3, 1])
def test_every_degradation_runs_and_changes_the_image(name, channels):
    img = PHOTO if channels == 3 else np.asarray(Image.fromarray(PHOTO).convert("L"))[:, :, None]
    cfg = DegradationConfig(name=name, factors=[4])
    out = DEGRADATIONS[name](img.copy(), np.random.default_rng(0), cfg)
    assert out.shape == img.shape and out.dtype == np.uint8
    if name == "none":  # inversion: the source is the target
        assert np.array_equal(out, img)
    elif name == "flip":  # frontalization: the target, mirrored or not
        assert np.array_equal(out, img) or np.array_equal(out, img[:, ::-1])
    elif name != "grayscale" or channels == 3:  # the luma of a gray image is itself
        assert np.abs(out.astype(int) - img.astype(int)).mean() > 1.0
    again = DEGRADATIONS[name](img.copy(), np.random.default_rng(0), cfg)
    assert np.array_equal(out, again)  # a function of the image and the generator only


def test_degradations_do_what_they_say():
    rng = np.random.default_rng(0)
    gray = DEGRADATIONS["grayscale"](PHOTO, rng, DegradationConfig())
    assert (gray[:, :, 0] == gray[:, :, 1]).all() and (gray[:, :, 1] == gray[:, :, 2]).all()
    sk = DEGRADATIONS["sketch"](PHOTO, rng, DegradationConfig(sketch_threshold=0.1))
    assert set(np.unique(sk)) <= {0, 255} and 0.5 < (sk == 255).mean() < 0.99  # black lines on white
    small = DEGRADATIONS["downsample"](PHOTO, rng, DegradationConfig(factors=[8], resize_back=False))
    assert small.shape == (8, 8, 3)
    smooth = DEGRADATIONS["blur"](PHOTO, rng, DegradationConfig(blur_sigma=[2.0, 2.0]))
    assert np.abs(np.diff(smooth.astype(int), axis=1)).mean() < 0.5 * np.abs(np.diff(PHOTO.astype(int), axis=1)).mean()
    noisy = DEGRADATIONS["noise"](PHOTO, rng, DegradationConfig(noise_sigma=[0.1, 0.1]))
    assert 15 < (noisy.astype(float) - PHOTO).std() < 35  # about 0.1 * 255, minus clipping


def test_downsample_factor_drawn_per_sample():
    cfg = DegradationConfig(factors=[2, 16], resize_back=False)
    rng = np.random.default_rng(0)
    assert {DEGRADATIONS["downsample"](PHOTO, rng, cfg).shape[0] for _ in range(20)} == {32, 4}


@pytest.mark.parametrize("kw, match", [
    (dict(name="pixelate"), r"data.degradation.name: expected one of \['downsample'.*got 'pixelate'"),
    (dict(name="downsample", factors=[64]), r"data.degradation.factors: .*1..32.*\[64\]"),
    (dict(name="downsample", factors=[]), "data.degradation.factors"),
    (dict(name="blur", blur_sigma=[3.0, 1.0]), "data.degradation.blur_sigma"),
    (dict(name="jpeg", jpeg_quality=[0, 50]), "data.degradation.jpeg_quality"),
    (dict(name="noise", noise_sigma=[0.1]), "data.degradation.noise_sigma"),
    (dict(name="sketch", sketch_threshold=0.9), "data.degradation.sketch_threshold"),
])
def test_bad_options_name_the_key(kw, match):
    with pytest.raises(ValueError, match=match):
        check_degradation(DegradationConfig(**kw))


@pytest.mark.parametrize("name, input_nc", [("downsample", 3), ("sketch", 1), ("grayscale", 1), ("jpeg", 3)])
def test_single_folder_pairs(tmp_path, name, input_nc):
    Image.fromarray(PHOTO).save(tmp_path / "x.png")
    Image.fromarray(PHOTO[::-1].copy()).save(tmp_path / "y.png")
    cfg = DataConfig(kind="single", root=str(tmp_path), preprocess="none", flip=False, num_workers=0,
                     input_nc=input_nc, degradation=DegradationConfig(name=name, factors=[2, 4, 8]))
    dm = build_datamodule(cfg)
    val, train = dm.dataset("val"), dm.dataset("train")
    item = val[0]
    assert item["A"].shape == (input_nc, 64, 64) and item["B"].shape == (3, 64, 64)
    assert item["A_path"].endswith("x.png")
    assert torch.equal(item["A"], val[0]["A"])  # evaluation: the same source in every epoch
    src = item["A"].expand(3, -1, -1)
    assert (src - item["B"]).abs().mean() > 0.01
    if name in ("downsample", "jpeg"):  # training: a fresh draw of the degradation per sample
        assert len({train[0]["A"].sum().item() for _ in range(6)}) > 1


def test_flip_mirrors_the_source_half_of_the_time():
    rng = np.random.default_rng(0)
    mirrored = [np.array_equal(DEGRADATIONS["flip"](PHOTO, rng, DegradationConfig()), PHOTO[:, ::-1])
                for _ in range(400)]
    assert 160 < sum(mirrored) < 240
