"""datamodules.io: listing, decoding with channel conversions, bad files, writing."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from datamodules.io import BadImageError, IMG_EXTENSIONS, list_images, read_image, write_image


def rgb(h=5, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_io_does_not_import_the_training_stack():
    code = ("import sys, datamodules.io; "
            "print(sorted(m for m in ('torch', 'pytorch_lightning', 'albumentations', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_rgb_and_grayscale_round_trip(tmp_path):
    img = rgb()
    Image.fromarray(img).save(tmp_path / "c.png")
    assert np.array_equal(read_image(tmp_path / "c.png", 3), img)
    gray = read_image(tmp_path / "c.png", 1)
    assert gray.shape == (5, 7, 1) and gray.dtype == np.uint8
    assert np.array_equal(gray[:, :, 0], np.asarray(Image.fromarray(img).convert("L")))
    Image.fromarray(img[:, :, 0]).save(tmp_path / "g.png")
    g3 = read_image(tmp_path / "g.png", 3)
    assert g3.shape == (5, 7, 3) and (g3 == img[:, :, :1]).all()  # grayscale replicated to RGB
    g3[0, 0, 0] = 1  # arrays are writable


def test_palette_image(tmp_path):
    img = rgb()
    Image.fromarray(img).convert("P").save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png", 3)
    expected = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    assert out.shape == (5, 7, 3) and np.array_equal(out, expected)


def test_alpha_is_composited_on_white(tmp_path):
    alpha = np.zeros((5, 7), np.uint8)
    alpha[:, 4:] = 255  # left transparent, right opaque
    Image.fromarray(np.dstack([np.zeros((5, 7, 3), np.uint8), alpha]), "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png", 3)
    assert (out[:, :4] == 255).all() and (out[:, 4:] == 0).all()
    Image.fromarray(np.dstack([np.zeros((5, 7), np.uint8), alpha]), "LA").save(tmp_path / "la.png")
    out = read_image(tmp_path / "la.png", 1)
    assert out.shape == (5, 7, 1) and (out[:, :4] == 255).all() and (out[:, 4:] == 0).all()


def test_16_and_32_bit_images_are_scaled_not_clipped(tmp_path):
    ramp = (np.arange(35).reshape(5, 7) * 1800).astype(np.uint16)  # 0 .. 61200
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    g = read_image(tmp_path / "g16.png", 1)
    assert g.shape == (5, 7, 1) and g.min() == 0 and g.max() == round(61200 / 65535 * 255)
    assert np.all(np.diff(g.reshape(-1).astype(int)) >= 0)  # order kept, nothing saturated
    assert read_image(tmp_path / "g16.png", 3).shape == (5, 7, 3)
    Image.fromarray((np.arange(35).reshape(5, 7) * 7).astype(np.int32), "I").save(tmp_path / "i32.tif")
    assert read_image(tmp_path / "i32.tif", 1).max() == 34 * 7  # 8-bit values in a 32-bit image are kept


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_and_garbage_files_name_the_file(tmp_path, fmt):
    Image.fromarray(rgb(32, 32)).save(tmp_path / f"full.{fmt}")
    data = (tmp_path / f"full.{fmt}").read_bytes()
    (tmp_path / f"cut.{fmt}").write_bytes(data[: len(data) // 2])  # cut in the middle of the pixel data
    with pytest.raises(BadImageError, match=f"cut.{fmt}") as e:
        read_image(tmp_path / f"cut.{fmt}", 3)
    assert e.value.path.endswith(f"cut.{fmt}") and isinstance(e.value, ValueError)
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(BadImageError, match="x.png.*unreadable"):
        read_image(tmp_path / "x.png", 3)


def test_unsupported_channel_count_names_the_file(tmp_path):
    Image.fromarray(rgb()).save(tmp_path / "c.png")
    with pytest.raises(BadImageError, match=r"c.png.*1 or 3 channels, not 4"):
        read_image(tmp_path / "c.png", 4)


def test_list_images_sorted_not_recursive_and_errors(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.webp"):
        Image.fromarray(rgb()).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    Image.fromarray(rgb()).save(tmp_path / "sub" / "0.png")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.webp"]
    assert ".png" in IMG_EXTENSIONS
    with pytest.raises(FileNotFoundError, match="nope"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images.*empty"):
        list_images(tmp_path / "empty")


def test_write_image(tmp_path):
    write_image(tmp_path / "deep" / "g.png", np.full((4, 6, 1), 7, np.uint8))
    write_image(tmp_path / "f.png", np.full((4, 6, 3), 0.5))
    assert read_image(tmp_path / "deep" / "g.png", 1)[0, 0, 0] == 7
    assert (read_image(tmp_path / "f.png", 3) == 128).all()
    with pytest.raises(ValueError, match=r"bad.png.*\(3, 4, 6\)"):
        write_image(tmp_path / "bad.png", np.zeros((3, 4, 6), np.uint8))


def test_lossy_formats_are_written_near_losslessly(tmp_path):
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 64x64 colour blocks
    write_image(tmp_path / "x.jpg", smooth)
    write_image(tmp_path / "x.webp", smooth)
    Image.fromarray(smooth).save(tmp_path / "pil_default.jpg")
    err = {f: np.abs(read_image(tmp_path / f, 3).astype(int) - smooth).mean() for f in ("x.jpg", "pil_default.jpg")}
    assert err["x.jpg"] < 0.5 * err["pil_default.jpg"]
    assert np.array_equal(read_image(tmp_path / "x.webp", 3), smooth)


@pytest.mark.parametrize("orientation, turn", [(1, None), (3, Image.Transpose.ROTATE_180),
                                               (6, Image.Transpose.ROTATE_270), (8, Image.Transpose.ROTATE_90)])
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    """Phone photos store pixels sideways with an orientation tag: they are read upright, as viewers show them."""
    from datamodules.io import displayed_size

    rng = np.random.default_rng(0)
    shown = np.kron(rng.integers(0, 256, (4, 2, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 32 high, 16 wide
    stored = Image.fromarray(shown)
    if turn is not None:  # what the camera wrote: the inverse turn
        stored = stored.transpose({Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
                                   Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90}.get(turn, turn))
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "p.jpg", exif=exif.tobytes(), quality=100, subsampling=0)
    got = read_image(tmp_path / "p.jpg", 3)
    assert got.shape == (32, 16, 3) and np.abs(got.astype(int) - shown).mean() < 3
    with Image.open(tmp_path / "p.jpg") as img:
        assert displayed_size(img) == (16, 32)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16"])
def test_one_decode_gives_each_channel_count_as_read_image_does(tmp_path, mode):
    from datamodules.io import read_image_as

    rng = np.random.default_rng(0)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (12, 10), dtype=np.uint16))
    else:
        img = Image.fromarray(rng.integers(0, 256, (12, 10, 4), dtype=np.uint8), "RGBA").convert(mode)
    img.save(tmp_path / "x.png")
    gray, rgb = read_image_as(tmp_path / "x.png", (1, 3))
    assert np.array_equal(gray, read_image(tmp_path / "x.png", 1)) and gray.shape == (12, 10, 1)
    assert np.array_equal(rgb, read_image(tmp_path / "x.png", 3)) and rgb.shape == (12, 10, 3)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(BadImageError, match="bad.png: unreadable image"):
        read_image_as(tmp_path / "bad.png", (1, 3))


def test_displayed_size_reads_the_header_only(tmp_path, monkeypatch):
    """predict groups its inputs by size before decoding them: a PNG without EXIF is not decoded to find none."""
    from PIL import ImageFile

    from datamodules.io import displayed_size

    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(tmp_path / "x.png")
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda img: pytest.fail("the pixels were decoded"))
    with Image.open(tmp_path / "x.png") as img:
        assert displayed_size(img) == (10, 12)


def test_images_in_formats_that_are_not_read_are_reported(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "b.jfif", format="JPEG")
    (tmp_path / "anim.gif").write_bytes(b"GIF89a")
    (tmp_path / "notes.txt").write_text("not an image, not reported")
    with pytest.warns(UserWarning, match=r"1 image\(s\) in formats that are not read \(anim.gif\)"):
        assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.jfif"]
