"""Reading and writing image files. numpy + PIL only: the inference API uses this without the training stack."""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
from PIL import Image, UnidentifiedImageError

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class BadImageError(ValueError):
    """An image file that cannot be decoded or converted; names the file."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        super().__init__(f"{path}: {reason}")


def list_images(folder: str | Path) -> List[Path]:
    """Image files directly in `folder`, sorted by name. Missing or empty folders are errors naming the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMG_EXTENSIONS)}) in {folder}")
    return files


def to_channels(img: Image.Image, channels: int, path: str | Path = "image") -> np.ndarray:
    """A decoded PIL image as (H, W, channels) uint8. Palette, 16-bit and alpha images are converted:
    16-bit values are scaled to 8 bits; transparent pixels are composited on white."""
    if channels not in (1, 3):
        raise BadImageError(path, f"can convert to 1 or 3 channels, not {channels}")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if a.max() > 255 or img.mode.startswith("I;16") else 255.0
        img = Image.fromarray(np.clip(a / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(a * (255.0 if a.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.array(img, dtype=np.uint8)  # a writable copy
    return arr[:, :, None] if channels == 1 else arr


def read_image(path: str | Path, channels: int) -> np.ndarray:
    """Decode an image file fully (truncated files fail here, not later) as (H, W, channels) uint8."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_channels(img, channels, path)
    except FileNotFoundError:
        raise
    except BadImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadImageError(path, f"unreadable image ({e})") from e


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write (H, W), (H, W, 1) or (H, W, 3) uint8 (floats in [0, 1] are scaled) to `path`."""
    path = Path(path)
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.clip(a.astype(np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path
