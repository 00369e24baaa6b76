"""Reading and writing image files. numpy + PIL only: the inference API uses this without the training stack."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from safeio.errors import UserError

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# image formats a folder may hold that are not read (animations, camera and HDR formats): listed with a warning
UNREAD_EXTENSIONS = (".gif", ".heic", ".heif", ".avif", ".jp2", ".exr", ".hdr", ".dng", ".cr2", ".nef", ".raw")
CHANNELS = (1, 3)  # what the networks take: grayscale or RGB
MODES_16BIT = ("I;16", "I;16B", "I;16L", "I;16N")


class BadImageError(UserError, ValueError):
    """An image file that cannot be decoded or converted; names the file."""

    def __init__(self, path: str | Path, reason: Optional[str] = None):
        # one argument: a whole message (how a DataLoader worker re-raises the error in the main process)
        self.path, self.reason = str(path), reason
        super().__init__(str(path) if reason is None else f"{path}: {reason}")


class DataError(UserError, ValueError):
    """A data set that cannot be used as configured (names the file or folder and what was expected)."""


def list_images(folder: str | Path) -> List[Path]:
    """Image files directly in `folder` (not recursive), sorted by name. A missing or empty folder is an error."""
    folder = Path(folder)
    if folder.is_file():
        raise NotADirectoryError(f"expected a folder of images, got a file: {folder}")
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    entries = [p for p in folder.iterdir() if p.is_file()]
    files = sorted(p for p in entries if p.suffix.lower() in IMG_EXTENSIONS)
    unread = sorted(p.name for p in entries if p.suffix.lower() in UNREAD_EXTENSIONS)
    if unread:
        warnings.warn(f"{folder}: {len(unread)} image(s) in formats that are not read ({', '.join(unread[:3])}"
                      f"{', ...' if len(unread) > 3 else ''}); convert them to one of {', '.join(IMG_EXTENSIONS)}",
                      stacklevel=2)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMG_EXTENSIONS)}) in {folder}")
    return files


def to_channels(img: Image.Image, channels: int, path: str | Path = "image") -> np.ndarray:
    """A decoded PIL image as a writable (H, W, channels) uint8 array, channels 1 or 3.

    - 16-bit and 32-bit integer images are scaled to 8 bits by their full range (65535, or 255 when the values fit
      in 8 bits); float images are taken as [0, 1] when their maximum is at most 1, else as [0, 255].
    - Alpha (RGBA, LA, palette with transparency) is composited on WHITE, not dropped: dropping it would expose
      whatever colour the invisible pixels happen to hold (often black), while scans, sketches and product photos
      with transparent backgrounds are meant to be seen on white.
    - Grayscale is replicated to RGB; RGB goes to grayscale with PIL's ITU-R 601 luma.
    """
    if channels not in CHANNELS:
        raise BadImageError(path, f"can convert to {' or '.join(map(str, CHANNELS))} channels, not {channels}")
    if img.mode in MODES_16BIT or img.mode == "I":
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode in MODES_16BIT or a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        scale = 255.0 if a.max() <= 1.0 else 1.0
        img = Image.fromarray(np.clip(a * scale + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")  # keeps a transparent palette entry as alpha
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    try:
        img = img.convert("L" if channels == 1 else "RGB")
    except ValueError as e:
        raise BadImageError(path, f"cannot convert a '{img.mode}' image to {channels} channels ({e})") from e
    arr = np.array(img, dtype=np.uint8)  # a writable copy
    return arr[:, :, None] if channels == 1 else arr


EXIF_ORIENTATION = 0x0112  # 1 = as stored; 5-8 turn the image by 90 degrees


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # a malformed EXIF block: the pixels as stored
        return 1


def upright(img: Image.Image) -> Image.Image:
    """The image as viewers show it: turned/mirrored by its EXIF orientation tag (phone photos), else itself."""
    return ImageOps.exif_transpose(img) if _orientation(img) != 1 else img


def displayed_size(img: Image.Image) -> Tuple[int, int]:
    """(width, height) of an opened image as `read_image` will return it (EXIF orientation applied), from its
    header: the pixels are not decoded. A PNG's EXIF stored after its pixels (rare; Pillow writes it before) is not
    seen here, as Pillow decodes the whole image to look for it; the size is then the stored one."""
    w, h = img.size
    if img.format == "PNG" and "exif" not in img.info:  # no EXIF before the pixels: take the PNG as upright
        return w, h
    return (h, w) if _orientation(img) in (5, 6, 7, 8) else (w, h)


def read_image(path: str | Path, channels: int) -> np.ndarray:
    """Decode an image file fully (truncated files fail here, not later) as (H, W, channels) uint8, upright as
    viewers show it (EXIF orientation applied; the reference code ignores the tag, which turns phone photos).
    A missing file raises FileNotFoundError; an undecodable or truncated one raises BadImageError naming it."""
    return read_image_as(path, (channels,))[0]


def read_image_as(path: str | Path, channels: Sequence[int]) -> List[np.ndarray]:
    """`read_image(path, c)` for each c in `channels`, from one decode of the file (predict: the net's input and
    the RGB image shown beside its output)."""
    try:
        with Image.open(path) as img:
            img.load()
            img = upright(img)
            return [to_channels(img, c, path) for c in channels]
    except (FileNotFoundError, BadImageError):
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadImageError(path, f"unreadable image ({type(e).__name__}: {e})") from e


def read_label_map(path: str | Path, label_nc: int) -> np.ndarray:
    """A segmentation label map (one class index per pixel: a gray "L" or palette "P" PNG, as CelebAMask-HQ's)
    as (H, W, 1) uint8 indices, read without any colour conversion. An index >= label_nc is an error naming the
    file (the usual sign of an RGB-coloured map or a wrong data.label_nc)."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "P", "I", "I;16"):
                raise BadImageError(path, f"expected a label map of class indices (a gray or palette PNG), got a "
                                          f"'{img.mode}' image")
            arr = np.array(img)
    except (FileNotFoundError, BadImageError):
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadImageError(path, f"unreadable label map ({type(e).__name__}: {e})") from e
    top = int(arr.max()) if arr.size else 0
    if top >= label_nc:
        raise DataError(f"{path}: class index {top} in a label map, but data.label_nc is {label_nc}")
    return arr.astype(np.uint8)[:, :, None]


def label_palette(n: int) -> np.ndarray:
    """(n, 3) uint8 colours for class indices 0..n-1, the PASCAL VOC colour map (class 0 black; the bits of the
    index spread over the high bits of R, G and B), so that neighbouring classes get distinct colours."""
    palette = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r, g, b = r | (c & 1) << shift, g | (c >> 1 & 1) << shift, b | (c >> 2 & 1) << shift
            c >>= 3
        palette[i] = r, g, b
    return palette


# lossy formats at near-lossless settings (PIL's defaults, JPEG quality 75 with 4:2:0 chroma and lossy WebP 80,
# would visibly degrade translated images)
SAVE_OPTIONS = {".jpg": dict(quality=95, subsampling=0), ".jpeg": dict(quality=95, subsampling=0),
                ".webp": dict(lossless=True)}


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an (H, W), (H, W, 1) or (H, W, 3) image to `path` (format from the suffix: JPEG at quality 95 without
    chroma subsampling, WebP lossless), creating folders; atomically, so an interrupted run never leaves half an
    image (which `predict --skip-existing` would take as done).
    uint8 is written as is; any other dtype is taken as floats in [0, 1] and scaled (values outside are clipped)."""
    path = Path(path)
    a = np.asarray(image)
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in CHANNELS)):
        raise ValueError(f"write_image {path}: expected an image (H, W), (H, W, 1) or (H, W, 3), got {a.shape}")
    if a.dtype != np.uint8:
        a = np.clip(a.astype(np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    from safeio import write_atomic

    suffix = path.suffix.lower()
    fmt = Image.registered_extensions().get(suffix)  # named: the temporary file's suffix says nothing
    if fmt is None:
        raise ValueError(f"write_image {path}: unknown image format '{path.suffix}'")
    image = Image.fromarray(a)
    write_atomic(path, lambda tmp: image.save(tmp, format=fmt, **SAVE_OPTIONS.get(suffix, {})), sync=False)
    return path
