"""Looking at toy faces and timing them: `preview` writes a grid of samples (posed, frontal, sketch), `yaw_sweep`
one face under several yaws (a visual check of the 3-D model), `benchmark` the colour renders per CPU second. Run
`python -m datamodules.toyfaces` to write docs/toyfaces_preview.png.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.toyfaces.painting import render_face, render_sketch
from datamodules.toyfaces.samples import ToyFaces, face_params


def preview(path, cols: int = 8, rows: int = 4, size: int = 80, seed: int = 0, max_yaw: float = 30.0) -> Path:
    """A grid PNG: `rows` x `cols` faces, each shown as posed image, frontal and sketch stacked vertically."""
    faces = ToyFaces(cols * rows, size, seed, "train", max_yaw)
    pad = 2
    cell = size + pad
    grid = np.full((rows * 3 * cell + pad, cols * cell + pad, 3), 255, np.uint8)
    for i in range(cols * rows):
        item = faces[i]
        r, c = divmod(i, cols)
        for j, img in enumerate((item["image"], item["frontal"], np.repeat(item["sketch"][..., None], 3, 2))):
            y0 = (3 * r + j) * cell + pad
            x0 = c * cell + pad
            grid[y0:y0 + size, x0:x0 + size] = img
        grid[(3 * r + 3) * cell: (3 * r + 3) * cell + pad] = 0  # a rule between groups of three rows
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path, optimize=True)
    return path


def benchmark(size: int = 64, n: int = 200, seed: int = 0) -> float:
    """Colour renders per second of CPU time (posed faces, parameters sampled inside the loop). Rendering is
    single-threaded, so this is the rate on one core, unaffected by other processes sharing the machine."""
    import time

    start = time.process_time()
    for i in range(n):
        render_face(face_params(seed, "train", i), size)
    return n / (time.process_time() - start)


def yaw_sweep(path, seed: int = 0, index: int = 0, size: int = 96, yaws=(-30, -15, 0, 15, 30)) -> Path:
    """One face under several yaws (colour above, sketch below): a visual check of the 3-D model."""
    p = face_params(seed, "train", index)
    top = np.concatenate([render_face(p, size, y) for y in yaws], 1)
    bottom = np.concatenate([np.repeat(render_sketch(p, size, y)[..., None], 3, 2) for y in yaws], 1)
    path = Path(path)
    Image.fromarray(np.concatenate([top, bottom], 0)).save(path)
    return path
