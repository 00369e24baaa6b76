"""datamodules.transforms: the reference preprocessing modes, shared geometry, source-only colour, determinism."""
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.config import DataConfig
from datamodules.io import DataError
from datamodules.transforms import PREPROCESS, PairTransform, check_preprocess, to_tensor


def cfg(**kw):
    base = dict(load_size=36, crop_size=24, size_multiple=4, flip=False)
    base.update(kw)
    return DataConfig(**base)


def rand_img(h, w, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def coords(h, w):
    """Channel 0 encodes the row, channel 1 the column: where a pixel came from can be read back."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([y * 4, x * 4, np.zeros_like(x)], -1).astype(np.uint8)


# (preprocess, train) -> (H, W) of a 40x60 (H x W) image with load_size 36, crop_size 24
SIZES = {
    ("resize_and_crop", True): (24, 24), ("resize_and_crop", False): (24, 24),
    ("crop", True): (24, 24), ("crop", False): (24, 24),
    ("scale_width", True): (24, 36), ("scale_width", False): (24, 24),  # height max(w-scaled, crop_size)
    ("scale_width_and_crop", True): (24, 24), ("scale_width_and_crop", False): (24, 24),
    ("none", True): (40, 60), ("none", False): (40, 60),
}


@pytest.mark.parametrize("preprocess", PREPROCESS)
@pytest.mark.parametrize("train", [True, False])
def test_output_sizes_and_range(preprocess, train):
    a = np.zeros((40, 60, 3), np.uint8)
    a[:, (np.arange(60) // 12) % 2 == 1] = 255  # black and white stripes: every crop keeps both ends of the range
    b = rand_img(40, 60)
    src, tgt = PairTransform(cfg(preprocess=preprocess), train)(a, b)
    assert src.shape == tgt.shape == (3, *SIZES[(preprocess, train)])
    assert src.dtype == tgt.dtype == torch.float32
    assert src.min() >= -1 and src.max() <= 1 and src.min() < -0.8 and src.max() > 0.8
    assert tgt.min() >= -1 and tgt.max() <= 1


def test_none_keeps_non_square_and_rounds_to_the_multiple():
    src, tgt = PairTransform(cfg(preprocess="none", size_multiple=4), True)(rand_img(30, 45), rand_img(30, 45))
    assert src.shape == tgt.shape == (3, 32, 44)
    src, _ = PairTransform(cfg(preprocess="none", size_multiple=16), False)(rand_img(30, 45), rand_img(30, 45))
    assert src.shape == (3, 32, 48)


def test_resize_is_pil_bicubic_like_the_reference():
    img = rand_img(40, 60)
    src, _ = PairTransform(cfg(preprocess="resize_and_crop"), train=False)(img, img)
    expected = np.asarray(Image.fromarray(img).resize((24, 24), Image.BICUBIC))
    assert torch.equal(src, to_tensor(expected))


def test_evaluation_is_deterministic_centre_crop_without_flip():
    img = coords(40, 60)
    t = PairTransform(cfg(preprocess="crop", flip=True), train=False)
    first, again = t(img, img), t(img, img)
    assert torch.equal(first[0], again[0])
    assert torch.equal(first[0], to_tensor(img[8:32, 18:42]))  # the centre, not flipped


@pytest.mark.parametrize("preprocess", PREPROCESS)
def test_same_random_geometry_on_both_images(preprocess):
    t = PairTransform(cfg(preprocess=preprocess, flip=True), train=True)
    img = rand_img(40, 60)
    gray = img[:, :, :1]
    outs = []
    for _ in range(10):
        src, tgt = t(gray, img)  # different channel counts, same pixels in channel 0
        assert src.shape[0] == 1 and tgt.shape[0] == 3
        assert torch.equal(src[0], tgt[0])
        outs.append(src)
    assert len({o.sum().item() for o in outs}) > 1  # the geometry really is random


def test_crop_and_flip_draw_independent_numbers():
    """Per-transform seeds would make the flip decision a function of the crop position; one stream must not."""
    torch.manual_seed(0)
    t = PairTransform(cfg(preprocess="crop", crop_size=24, flip=True), train=True)
    img = coords(40, 40)
    top, flipped = [], []
    for _ in range(200):
        src, _ = t(img, img)
        px = ((src + 1) * 127.5).round()
        top.append(px[0, 0, 0].item() / 4)
        flipped.append(px[1, 0, 0] > px[1, 0, -1])
    top, flipped = np.array(top), np.array(flipped)
    assert 0 < top.min() or top.max() > 8  # crops move
    for half in (top < 8, top >= 8):
        assert 0.25 < flipped[half].mean() < 0.75


def test_training_randomness_follows_the_torch_seed():
    t = PairTransform(cfg(preprocess="resize_and_crop", flip=True, color_jitter=0.3), train=True)
    img = rand_img(40, 60)

    def draw(seed):
        torch.manual_seed(seed)
        return torch.stack([torch.cat(t(img, img)) for _ in range(4)])

    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))


def test_colour_jitter_only_on_the_source_and_only_in_training():
    img = rand_img(16, 16)
    for nc in (3, 1):
        a = img if nc == 3 else img[:, :, :1]
        src, tgt = PairTransform(cfg(preprocess="none", color_jitter=0.5, input_nc=nc), train=True)(a, img)
        assert torch.equal(tgt, to_tensor(img))
        assert src.shape[0] == nc and not torch.allclose(src, to_tensor(a), atol=0.05)
    src, _ = PairTransform(cfg(preprocess="none", color_jitter=0.5), train=False)(img, img)
    assert torch.equal(src, to_tensor(img))


def test_source_made_from_the_transformed_target():
    img = rand_img(40, 60)
    seen = []

    def make_source(target):
        seen.append(target.shape)
        return 255 - target

    src, tgt = PairTransform(cfg(preprocess="resize_and_crop", flip=True), train=True)(None, img, make_source)
    assert seen == [(24, 24, 3)] and torch.allclose(src, -tgt, atol=1e-6)


def test_crop_larger_than_the_image_names_the_file():
    t = PairTransform(cfg(preprocess="crop", crop_size=32), train=True)
    with pytest.raises(DataError, match=r"small.png: image is 20x16, smaller than data.crop_size 32"):
        t(rand_img(16, 20), rand_img(16, 20), name="small.png")


def test_to_tensor_range():
    out = to_tensor(np.array([[[0], [255]]], np.uint8))
    assert out.shape == (1, 1, 2) and out.dtype == torch.float32 and out.tolist() == [[[-1.0, 1.0]]]


@pytest.mark.parametrize("kw, match", [
    (dict(preprocess="resize"), r"data.preprocess: expected one of .*got 'resize'"),
    (dict(preprocess="resize_and_crop", crop_size=300, load_size=286), r"data.crop_size \(300\).*load_size \(286\)"),
    (dict(crop_size=0), "data.crop_size"),
    (dict(size_multiple=-4), "data.size_multiple"),
    (dict(color_jitter=2.0), "data.color_jitter"),
])
def test_bad_options_name_the_key(kw, match):
    with pytest.raises(ValueError, match=match):
        check_preprocess(DataConfig(**kw))
