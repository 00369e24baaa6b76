"""Turning a face's draw list into pixels. `render_face` paints the shapes in colour over a gradient background,
then multiplies the head's Lambert shading into the shaded shapes; `render_sketch` draws the same shapes as black
lines on white (painter's order, so hidden lines stay hidden). Both draw at 4x (up to 64 px) or 2x and box-filter
down, which is the anti-aliasing. Sizes are checked here (MIN_SIZE..MAX_SIZE pixels).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import numpy as np
from PIL import Image, ImageDraw

from datamodules.toyfaces.features import face_scene
from datamodules.toyfaces.geometry import VIEW_Y, VIEW_ZOOM, Head, light_direction
from datamodules.toyfaces.params import FaceParams

MIN_SIZE, MAX_SIZE = 16, 256  # supported output sizes (pixels, square)


def check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise ValueError(f"toy faces: expected an int size in [{MIN_SIZE}, {MAX_SIZE}] pixels, got {size!r}")
    return int(size)


def _supersample(size: int) -> int:
    """Drawing resolution factor: 4x up to 64 px, 2x above (both box-filtered down)."""
    return 4 if size <= 64 else 2


def _pixels(pts: np.ndarray, res: int) -> List[float]:
    """Image coordinates (N, 2), y up -> a flat list x0, y0, x1, ... in pixels of a res x res canvas."""
    out = np.empty_like(pts)
    out[:, 0] = (pts[:, 0] + 1.0) * (0.5 * res)
    out[:, 1] = (1.0 - pts[:, 1]) * (0.5 * res)
    return out.ravel().tolist()


def _grid(size: int) -> np.ndarray:
    """Model coordinates of the pixel centres along one axis (x; y is its negative plus VIEW_Y)."""
    return ((np.arange(size) + 0.5) / size * 2 - 1) / VIEW_ZOOM


def _background(p: FaceParams, size: int) -> np.ndarray:
    a = math.radians(p.bg_angle)
    c = (np.arange(size) + 0.5) / size * 2 - 1
    t = np.clip(0.5 + 0.35 * (c[None, :] * math.cos(a) + c[:, None] * math.sin(a)), 0, 1)[..., None]
    ca, cb = np.array(p.bg_colour_a, np.float32), np.array(p.bg_colour_b, np.float32)
    return ca + (cb - ca) * t


def _shading(p: FaceParams, g: Head, size: int) -> np.ndarray:
    """Lambert shading of the head ellipsoid (1 = unchanged), extended smoothly past its outline."""
    c = _grid(size)
    v = np.clip((VIEW_Y - c - p.cy) / p.head_h, -1, 1)[:, None]
    half = np.maximum(g.A * g.profile(v), 1e-3)
    s = np.clip((c[None, :] - p.cx) / half, -1, 1)
    nx = s * np.sqrt(1 - v * v)
    nz = np.sqrt(np.clip(1 - nx * nx - v * v, 0, 1))
    lx, ly, lz = light_direction(p)
    lam = np.clip(nx * lx + v * ly + nz * lz, 0, 1)
    return (0.72 + 0.4 * lam).astype(np.float32)


def _line_width(size: int) -> float:
    """Sketch line width in output pixels."""
    return max(0.8, size / 110)


def _paint(p: FaceParams, yaw: float, scene, size: int) -> np.ndarray:
    shapes, pts = scene
    ss = _supersample(size)
    res = size * ss
    flat = _pixels(pts, res)
    canvas = Image.fromarray(_background(p, size).astype(np.uint8)).resize((res, res), Image.NEAREST)
    mask = Image.new("L", (res, res), 0)  # 255 where the topmost opaque shape takes the head's shading
    draw, draw_mask = ImageDraw.Draw(canvas, "RGBA"), ImageDraw.Draw(mask)
    for sh in shapes:
        xy = flat[2 * sh.start: 2 * sh.stop]
        if sh.kind == "poly":
            draw.polygon(xy, fill=sh.colour)
            if sh.colour[3] == 255:
                draw_mask.polygon(xy, fill=255 if sh.shade else 0)
        else:
            draw.line(xy, fill=sh.colour, width=max(1, round(sh.width * VIEW_ZOOM * res / 2)), joint="curve")
    img = np.asarray(canvas.reduce(ss), np.float32)
    m = np.asarray(mask.reduce(ss), np.float32)[..., None] * (1 / 255)
    shade = _shading(p, Head(p, yaw), size)[..., None]
    img = img * (1 + m * (shade - 1))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _draw_sketch(scene, size: int) -> np.ndarray:
    shapes, pts = scene
    ss = _supersample(size)
    res = size * ss
    flat = _pixels(pts, res)
    lw = max(1, round(_line_width(size) * ss))
    canvas = Image.new("L", (res, res), 255)
    draw = ImageDraw.Draw(canvas)
    for sh in shapes:
        if sh.sketch is None:
            continue
        xy = flat[2 * sh.start: 2 * sh.stop]
        if sh.sketch == "line":
            draw.line(xy, fill=0, width=lw, joint="curve")
        elif sh.sketch == "ink":
            draw.polygon(xy, fill=0)
        elif sh.sketch == "hide":
            draw.polygon(xy, fill=255)
        else:
            if sh.sketch == "shape":
                draw.polygon(xy, fill=255)
            draw.line(xy + xy[:2], fill=0, width=lw, joint="curve")
    return np.array(canvas.reduce(ss))


def render_face(params: FaceParams, size: int, yaw: Optional[float] = None) -> np.ndarray:
    """The face in colour, (size, size, 3) uint8, under `yaw` degrees (default: the sample's own yaw)."""
    size = check_size(size)
    yaw = params.yaw if yaw is None else float(yaw)
    return _paint(params, yaw, face_scene(params, yaw), size)


def render_frontal(params: FaceParams, size: int) -> np.ndarray:
    """The frontal truth: the same face with yaw 0."""
    return render_face(params, size, yaw=0.0)


def render_sketch(params: FaceParams, size: int, yaw: Optional[float] = None) -> np.ndarray:
    """A line drawing of the same geometry, (size, size) uint8: black lines on white (hidden lines removed)."""
    size = check_size(size)
    yaw = params.yaw if yaw is None else float(yaw)
    return _draw_sketch(face_scene(params, yaw), size)


def render_all(params: FaceParams, size: int) -> Dict[str, np.ndarray]:
    """{"image", "frontal", "sketch"} of one face, sharing the posed geometry between image and sketch."""
    size = check_size(size)
    posed = face_scene(params, params.yaw)
    return {"image": _paint(params, params.yaw, posed, size), "frontal": render_frontal(params, size),
            "sketch": _draw_sketch(posed, size)}
