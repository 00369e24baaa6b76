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


def _psp_down_by_matrix(img, f):
    """pSp's SR downsampling written independently: a dense float64 resampling matrix with mirrored borders."""
    def cubic(x, a=-0.5):
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a if x < 2 else 0

    def matrix(n):
        weights = np.array([cubic((t - 2 * f + 0.5) / f) for t in range(4 * f)])
        weights /= weights.sum()
        m = np.zeros((n // f, n))
        for o in range(n // f):
            for t, wt in enumerate(weights):
                i = o * f + t - (3 * f) // 2
                i = -i if i < 0 else 2 * (n - 1) - i if i > n - 1 else i  # mirror without repeating the edge
                m[o, i] += wt
        return m

    h, w, _ = img.shape
    x = np.einsum("oh,hwc,pw->opc", matrix(h), img / 255.0, matrix(w))
    return np.floor(np.clip(x, 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
def test_downsample_psp_is_psp_s_filter(factor):
    from datamodules.degrade import psp_downsample_image

    ours = psp_downsample_image(PHOTO, factor)
    expected = _psp_down_by_matrix(PHOTO, factor)
    assert ours.shape == (64 // factor, 64 // factor, 3)
    diff = np.abs(ours.astype(int) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # float32 vs float64 at the truncation boundary
    if factor == 1:  # not the identity: half a pixel of shift
        assert np.abs(ours.astype(int) - PHOTO).mean() > 1.0
    cfg = DegradationConfig(name="downsample_psp", factors=[factor])
    up = DEGRADATIONS["downsample_psp"](PHOTO, np.random.default_rng(0), cfg)
    assert np.array_equal(up, np.asarray(Image.fromarray(ours).resize((64, 64), Image.BILINEAR)))
    with pytest.raises(ValueError, match="downsample_psp by 32 mirrors 96 pixels.*64x64"):
        DEGRADATIONS["downsample_psp"](PHOTO, np.random.default_rng(0), DegradationConfig(factors=[32]))
