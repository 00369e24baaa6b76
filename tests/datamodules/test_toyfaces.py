import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from datamodules.toyfaces import (HAIR_STYLES, HATS, FaceParams, ToyFaces, ToyFacesTensors, face_params, preview,
                                  render_face, render_frontal, render_sketch, sample_params, write_toyfaces)


def _same_item(a, b):
    return all(np.array_equal(a[k], b[k]) for k in ("image", "frontal", "sketch")) and a["params"] == b["params"]


def test_deterministic_per_seed_and_index():
    faces = ToyFaces(6, 32, seed=3)
    again = faces[4]
    assert _same_item(faces[4], again)
    assert _same_item(ToyFaces(6, 32, seed=3)[4], again)  # a fresh object gives the same sample
    assert _same_item(ToyFaces(50, 32, seed=3)[4], again)  # independent of the data set's length
    assert _same_item(faces[-2], again)


def test_differs_across_seeds_and_indices():
    a = ToyFaces(4, 32, seed=0)
    b = ToyFaces(4, 32, seed=1)
    images = [a[i]["image"] for i in range(4)] + [b[i]["image"] for i in range(4)]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i].astype(int) - images[j].astype(int)).mean() > 3, (i, j)


def test_splits_are_disjoint():
    params = {split: {face_params(0, split, i) for i in range(60)} for split in ("train", "val", "test")}
    assert all(len(p) == 60 for p in params.values())
    assert not params["train"] & params["val"] and not params["train"] & params["test"]
    assert not params["val"] & params["test"]
    assert not np.array_equal(ToyFaces(1, 32, split="train")[0]["image"], ToyFaces(1, 32, split="val")[0]["image"])


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_and_dtypes(size):
    item = ToyFaces(2, size, seed=0)[1]
    assert item["image"].shape == item["frontal"].shape == (size, size, 3)
    assert item["sketch"].shape == (size, size)
    assert item["image"].dtype == item["frontal"].dtype == item["sketch"].dtype == np.uint8
    assert isinstance(item["params"], FaceParams)
    assert len({tuple(c) for c in item["image"].reshape(-1, 3)}) > 100  # shaded and anti-aliased, not flat


@pytest.mark.parametrize("size", [16, 256])
def test_extreme_sizes(size):
    p = face_params(0, "train", 0)
    assert render_face(p, size).shape == (size, size, 3)
    assert render_sketch(p, size).shape == (size, size)


@pytest.mark.parametrize("size", [15, 257, 0, 64.0, "64", None, True])
def test_invalid_size_raises(size):
    p = face_params(0, "train", 0)
    with pytest.raises(ValueError, match=r"expected an int size in \[16, 256\] pixels, got"):
        render_face(p, size)
    with pytest.raises(ValueError, match=r"expected an int size in \[16, 256\]"):
        ToyFaces(4, size)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="expected split in"):
        ToyFaces(4, 32, split="training")
    with pytest.raises(ValueError, match="expected n >= 1"):
        ToyFaces(0, 32)
    with pytest.raises(ValueError, match="max_yaw"):
        ToyFaces(4, 32, max_yaw=120)
    with pytest.raises(IndexError, match="out of range"):
        ToyFaces(4, 32)[4]


def test_frontal_is_the_render_at_yaw_zero():
    for i in range(3):
        p = face_params(0, "train", i)
        assert abs(p.yaw) > 0.5  # these samples are posed
        frontal = render_frontal(p, 64)
        assert np.array_equal(frontal, render_face(p, 64, yaw=0.0))
        assert np.array_equal(frontal, render_face(replace(p, yaw=0.0), 64))
        assert np.array_equal(ToyFaces(3, 64)[i]["frontal"], frontal)


def test_yaw_changes_the_image_but_not_the_frontal():
    p = face_params(0, "train", 1)
    left, right = replace(p, yaw=-25.0), replace(p, yaw=25.0)
    a, b = render_face(left, 64), render_face(right, 64)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 4
    assert np.array_equal(render_frontal(left, 64), render_frontal(right, 64))
    assert not np.array_equal(render_sketch(left, 64), render_sketch(right, 64))


def _feature_centre_x(sketch: np.ndarray) -> float:
    """x of the dark pixels of the inner face (eyes, nose, mouth), away from the outline and the ears."""
    s = sketch.shape[0]
    inner = 255 - sketch[int(0.3 * s):int(0.62 * s), int(0.32 * s):int(0.68 * s)].astype(float)
    return float((inner.sum(0) * np.arange(inner.shape[1])).sum() / inner.sum())


def test_yaw_moves_the_features_towards_the_turn():
    for i in range(6):
        p = face_params(0, "train", i)
        shift = _feature_centre_x(render_sketch(p, 128, yaw=25.0)) - _feature_centre_x(render_sketch(p, 128, yaw=-25.0))
        assert shift > 2.0, (i, shift)  # pixels at 128 px: positive yaw turns the face to the image's right


def test_sketch_is_mostly_white_with_dark_lines():
    for i in range(4):
        sk = ToyFaces(4, 64)[i]["sketch"]
        assert (sk > 200).mean() > 0.75
        assert 0.02 < (sk < 100).mean() < 0.2
        # lines, not filled regions: most dark pixels have a light pixel within two pixels
        dark = sk < 100
        near_light = np.zeros_like(dark)
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                near_light |= np.roll(np.roll(sk > 200, dy, 0), dx, 1)
        assert (dark & near_light).sum() > 0.8 * dark.sum()


def test_sample_params_covers_the_distribution():
    rng = np.random.default_rng(0)
    ps = [sample_params(rng, max_yaw=12.0) for _ in range(300)]
    assert all(-12.0 <= p.yaw <= 12.0 for p in ps)
    assert {p.hair_style for p in ps} == set(HAIR_STYLES)
    assert {p.hat for p in ps} == set(HATS)
    glasses = np.mean([p.glasses for p in ps])
    assert 0.12 < glasses < 0.4
    assert any(p.mouth_open for p in ps) and any(p.earrings for p in ps)
    assert len({p.skin for p in ps}) > 250
    json.dumps([p.__dict__ for p in ps[:5]])  # plain Python values: the params serialise to JSON


def test_cache_matches_rendering():
    plain = ToyFaces(3, 32, seed=5)
    cached = ToyFaces(3, 32, seed=5, cache=True)
    first = cached[1]
    first["image"][:] = 0  # items are copies: writing to them leaves the cache intact
    assert _same_item(cached[1], plain[1])
    arrays = cached.arrays()
    assert arrays["image"].shape == (3, 32, 32, 3) and arrays["sketch"].shape == (3, 32, 32)
    for i in range(3):
        assert np.array_equal(arrays["frontal"][i], plain[i]["frontal"])


def test_tensor_view():
    torch = pytest.importorskip("torch")
    view = ToyFacesTensors(ToyFaces(2, 32), keys=("image", "sketch"))
    item = view[0]
    assert item["image"].shape == (3, 32, 32) and item["sketch"].shape == (1, 32, 32)
    assert item["image"].dtype == torch.float32 and -1 <= item["image"].min() < item["image"].max() <= 1
    with pytest.raises(ValueError, match="expected keys from"):
        ToyFacesTensors(ToyFaces(2, 32), keys=("A",))


def test_write_toyfaces(tmp_path):
    root = write_toyfaces(tmp_path / "faces", n=3, size=32, seed=2, split="val")
    faces = ToyFaces(3, 32, seed=2, split="val")
    for folder, key in (("images", "image"), ("frontal", "frontal"), ("sketch", "sketch")):
        files = sorted(p.name for p in (root / folder).iterdir())
        assert files == ["00000.png", "00001.png", "00002.png"]
        assert np.array_equal(np.asarray(Image.open(root / folder / "00002.png")), faces[2][key])
    lines = (root / "params.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[1])["yaw"] == faces[1]["params"].yaw


def test_preview(tmp_path):
    path = preview(tmp_path / "grid.png", cols=2, rows=1, size=32)
    grid = np.asarray(Image.open(path))
    assert grid.shape == (3 * 34 + 2, 2 * 34 + 2, 3)
    assert grid.std() > 20
