"""Translate a file or a folder with a Translator: batched by image size, names kept, inputs never touched."""
from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from datamodules.io import BadImageError, IMG_EXTENSIONS, list_images, read_image, write_image


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def predict_paths(translator, input: str | Path, output: str | Path, batch_size: int = 8,
                  progress: bool = True) -> List[Path]:
    """Translate `input` (an image file or a folder of images) into `output`; return the files written.

    Outputs keep their file names. Writing into the input folder (or any folder inside it) is refused, so inputs
    are never overwritten. Unreadable inputs are reported and skipped.
    """
    src, out = Path(input), Path(output)
    if src.is_dir():
        files, in_root = list_images(src), src
    elif src.is_file():
        if src.suffix.lower() not in IMG_EXTENSIONS:
            raise ValueError(f"not an image file ({', '.join(IMG_EXTENSIONS)}): {src}")
        files, in_root = [src], src.parent
    else:
        raise FileNotFoundError(f"input not found: {src}")
    if _inside(out, in_root):
        raise ValueError(f"refusing to write into the input folder: output {out} is inside {in_root}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    groups: Dict[Tuple[int, int], List[Tuple[Path, np.ndarray]]] = defaultdict(list)
    skipped = []
    for f in files:
        try:
            img = read_image(f, translator.input_nc)
        except BadImageError as e:
            skipped.append(f)
            warnings.warn(f"skipping {e}", stacklevel=2)
            continue
        groups[img.shape[:2]].append((f, img))

    out.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    total = sum(len(g) for g in groups.values())
    bar = _progress(progress, total)
    with bar:
        task = bar.add_task("translating", total=total) if progress else None
        for items in groups.values():
            for i in range(0, len(items), batch_size):
                chunk = items[i:i + batch_size]
                x = torch.stack([translator.from_array(img) for _, img in chunk])
                y = translator.translate_batch(x)
                for (f, _), yi in zip(chunk, y):
                    written.append(write_image(out / f.name, translator.to_uint8(yi)))
                if task is not None:
                    bar.advance(task, len(chunk))
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s): {', '.join(str(s) for s in skipped[:5])}")
    return written


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool, total: int):
    if not enabled:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
