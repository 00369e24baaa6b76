import numpy as np
import pytest
from PIL import Image

from datamodules.io import BadImageError, list_images, read_image, write_image


def test_modes_converted(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    rgba = np.dstack([rgb, np.zeros((5, 7), np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray((np.arange(35).reshape(5, 7) * 1800).astype(np.uint16)).save(tmp_path / "g16.png")
    assert read_image(tmp_path / "p.png", 3).shape == (5, 7, 3)
    assert (read_image(tmp_path / "a.png", 3) == 255).all()  # fully transparent -> white
    g = read_image(tmp_path / "g16.png", 1)
    assert g.shape == (5, 7, 1) and g.max() > 200 and g.min() == 0  # 16-bit scaled, not clipped
    assert read_image(tmp_path / "g16.png", 3).shape == (5, 7, 3)


def test_errors_name_the_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(BadImageError, match="x.png"):
        read_image(tmp_path / "x.png", 3)
    with pytest.raises(FileNotFoundError, match="nope"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        list_images(tmp_path / "empty")


def test_write_and_list(tmp_path):
    write_image(tmp_path / "b.png", np.zeros((4, 4, 1), np.uint8))
    write_image(tmp_path / "a.png", np.ones((4, 4, 3)) * 0.5)
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.png"]
    assert read_image(tmp_path / "a.png", 3)[0, 0, 0] == 128
