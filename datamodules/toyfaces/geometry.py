"""The 3-D model behind a toy face and its projection: the posed head (`Head`: an ellipsoid with a parametric jaw,
turned by the yaw and projected orthographically), the draw list (`Scene` collects `Shape`s whose points are given
on the head's surface, in front of it or already in the image, and projects them all at once), and the surface
regions that hair and hats are made of (`cap`, `band`). Numbers here are model units; the camera framing is
VIEW_ZOOM and VIEW_Y.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from datamodules.toyfaces.params import FaceParams

VIEW_ZOOM, VIEW_Y = 1.3, 0.05  # the camera frames the model: image = zoom * (model - (0, VIEW_Y))
HALF_PI = np.pi / 2
RAMP = {n: np.linspace(0, 1, n) for n in range(2, 65)}  # shared parameter ramps: RAMP[n] = n steps from 0 to 1
UNIT_CIRCLE = {n: (np.cos(np.linspace(0, 2 * np.pi, n, endpoint=False)),
                   np.sin(np.linspace(0, 2 * np.pi, n, endpoint=False)))
               for n in (8, 10, 12, 16, 24, 28, 32)}  # (cos, sin) of n equally spaced angles


class Head:
    """The posed head: maps surface coordinates to image coordinates for one yaw.

    The head is an ellipsoid (half-axes w, h, d) whose horizontal radius at height v = (y - cy) / h (in [-1, 1]) is
    scaled by a profile f(v): an ellipse above the eyes, a superellipse with exponent `jaw` below. Rotating the
    cross-section at height v (half-axes w f, d f) by the yaw turns longitude t into image x = A f sin(t + delta)
    with A = hypot(w cos yaw, d sin yaw), delta = atan2(d sin yaw, w cos yaw); t + delta = +-pi/2 is the silhouette.
    Points beyond it are folded onto it (clamped), which is how the far side of the face disappears.
    """

    def __init__(self, p: FaceParams, yaw_deg: float):
        self.p = p
        psi = math.radians(yaw_deg)
        self.cos, self.sin = math.cos(psi), math.sin(psi)
        self.w, self.h, self.d = p.head_w, p.head_h, p.head_w * p.head_d
        self.A = math.hypot(self.w * self.cos, self.d * self.sin)
        self.delta = math.atan2(self.d * self.sin, self.w * self.cos)

    def profile(self, v):
        v = np.minimum(np.maximum(v, -1.0), 1.0)
        upper = np.sqrt(1.0 - v * v)
        lower = (1.0 - np.abs(v) ** self.p.jaw) ** (1.0 / self.p.jaw) * (1.0 - self.p.chin * v * v)
        return np.where(v >= 0, upper, lower)

    def profile1(self, v: float) -> float:
        """`profile` of one float (plain math, same formula)."""
        v = min(max(v, -1.0), 1.0)
        if v >= 0:
            return math.sqrt(1 - v * v)
        return (1 - abs(v) ** self.p.jaw) ** (1 / self.p.jaw) * (1 - self.p.chin * v * v)

    def longitude(self, xf, yf):
        """Longitude t of the surface point that the frontal view shows at (xf, yf), and its height v."""
        v = (yf - self.p.cy) / self.h
        u = (xf - self.p.cx) / (self.w * np.maximum(self.profile(v), 1e-3))
        return np.arcsin(np.minimum(np.maximum(u, -1.0), 1.0)), v

    def longitude1(self, xf: float, yf: float) -> float:
        """`longitude` of one point (plain math), without the height."""
        u = (xf - self.p.cx) / (self.w * max(self.profile1((yf - self.p.cy) / self.h), 1e-3))
        return math.asin(min(max(u, -1.0), 1.0))

    def on_angles(self, t, v, lift, lift_y):
        """Surface point at longitude t (0 = front) and height v of the head grown by (1 + lift), folded at the
        silhouette; image y grows by (1 + lift_y)."""
        f = self.profile(v)
        x = self.p.cx + (1 + lift) * self.A * f * np.sin(np.minimum(np.maximum(t + self.delta, -np.pi / 2),
                                                                    np.pi / 2))
        return x, self.p.cy + (1 + lift_y) * self.h * v

    def raised(self, xf, yf, e):
        """Pose frontal points pushed forward by e off the surface (the nose); never folded."""
        t, v = self.longitude(xf, yf)
        f = self.profile(v)
        x = self.w * f * np.sin(t)
        z = self.d * f * np.cos(t) + e
        return self.p.cx + x * self.cos + z * self.sin, yf

    def rotate(self, x, y, z):
        """Pose points given in head coordinates (relative to the head centre): image x, image y, depth z."""
        return self.p.cx + x * self.cos + z * self.sin, self.p.cy + y, -x * self.sin + z * self.cos

    def half_width(self, y: float) -> float:
        """Half-width of the posed head's outline at image height y."""
        return self.A * self.profile1((y - self.p.cy) / self.h)


def light_direction(p: FaceParams) -> Tuple[float, float, float]:
    """Unit vector towards the light (x right, y up, z at the viewer)."""
    az, el = math.radians(p.light_azimuth), math.radians(p.light_elevation)
    return (math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el))


# One list of shapes in painter's order serves both renderers. Each shape: kind ("poly" | "line"), a slice of the
# scene's points, RGBA colour, line width (model units), how the sketch draws it, and whether the head's shading
# applies to it. Sketch modes: "shape" white fill + black outline, "open" outline only, "ink" black fill, "line"
# black line, "hide" white fill (hides what is behind, no line), None (colour only).


@dataclass
class Shape:
    kind: str
    start: int
    stop: int
    colour: Tuple[int, int, int, int]
    width: float = 0.0
    sketch: Optional[str] = "shape"
    shade: bool = True


class Scene:
    """Collects shapes whose points come in four kinds and projects all points of a kind in one go:
    "image" (already posed), "face" (frontal position on the surface, optional lift), "angles" (longitude and
    height on the head grown by a lift), "raised" (frontal position pushed forward off the surface)."""

    KINDS = ("image", "face", "angles", "raised")

    def __init__(self, g: Head):
        self.g = g
        self.shapes: List[Tuple[str, Shape]] = []
        self.parts: Dict[str, List[Tuple[np.ndarray, ...]]] = {k: [] for k in self.KINDS}
        self.count = dict.fromkeys(self.KINDS, 0)

    def add(self, how: str, cols, kind="poly", colour=(0, 0, 0, 255), width=0.0, sketch="shape", shade=True):
        n = len(cols[0])
        cols = tuple(c if isinstance(c, np.ndarray) else np.full(n, c) for c in cols)
        start = self.count[how]
        self.count[how] += n
        self.parts[how].append(cols)
        self.shapes.append((how, Shape(kind, start, start + n, colour, width, sketch, shade)))

    def finish(self) -> Tuple[List[Shape], np.ndarray]:
        """Project every point; returns the shapes (slices into the points) and the points (N, 2) in the image's
        [-1, 1] coordinates (y up)."""
        g = self.g

        def stack(how, k):
            parts = self.parts[how]
            return [np.concatenate([c[i] for c in parts]) if parts else np.zeros(0) for i in range(k)]

        xs, ys = stack("image", 2)
        fx, fy, flift = stack("face", 3)
        ft, fv = g.longitude(fx, fy)
        at, av, alift, alift_y = stack("angles", 4)
        px, py = g.on_angles(np.concatenate([ft, at]), np.concatenate([fv, av]), np.concatenate([flift, alift]),
                             np.concatenate([np.zeros_like(flift), alift_y]))
        rx, ry, re = stack("raised", 3)
        qx, qy = g.raised(rx, ry, re)
        pts = np.empty((len(xs) + len(px) + len(qx), 2))
        pts[:, 0] = np.concatenate([xs, px, qx])
        pts[:, 1] = np.concatenate([ys, py, qy])
        base = {"image": 0, "face": len(xs), "angles": len(xs) + len(fx), "raised": len(xs) + len(px)}
        shapes = []
        for how, s in self.shapes:
            s.start += base[how]
            s.stop += base[how]
            shapes.append(s)
        pts[:, 0] *= VIEW_ZOOM
        pts[:, 1] = (pts[:, 1] - VIEW_Y) * VIEW_ZOOM
        return shapes, pts


def ellipse(cx, cy, rx, ry, n=24):
    """n points of an axis-aligned ellipse (n must be a key of UNIT_CIRCLE)."""
    c, s = UNIT_CIRCLE[n]
    return cx + rx * c, cy + ry * s


def cap(sc: Scene, v_of_t, lift: float, colour, n=40, bump=0.0, sketch="shape", shade=True):
    """The visible part of the region above the curve v = v_of_t(t) on the head grown by (1 + lift): the visible
    stretch of the curve, then the silhouette up over the crown and back down."""
    g = sc.g
    t = np.pi * RAMP[n] - HALF_PI - g.delta  # longitudes of the visible stretch
    v_edge = np.minimum(np.maximum(v_of_t(t), -1), 1)
    m = n // 2
    right = v_edge[-1] + (1 - v_edge[-1]) * RAMP[m]
    left = 1 + (v_edge[0] - 1) * RAMP[m]
    rim = np.full(n + 2 * m, lift)
    if bump:  # curly hair: a bumpy outline
        rim[n:] += bump * np.abs(np.sin(np.linspace(0, 7 * np.pi, 2 * m)))
    ts = np.concatenate([t, np.full(m, HALF_PI - g.delta), np.full(m, -HALF_PI - g.delta)])
    sc.add("angles", (ts, np.concatenate([v_edge, right, left]), rim, lift), colour=colour, sketch=sketch,
           shade=shade)


def band(sc: Scene, v_lo: float, v_hi: float, lift: float, colour, n=20):
    """The visible part of the strip v_lo < v < v_hi all around the head grown by (1 + lift) (a hat band)."""
    t = np.pi * RAMP[n] - HALF_PI - sc.g.delta
    sc.add("angles", (np.concatenate([t, t[::-1]]), np.concatenate([np.full(n, v_lo), np.full(n, v_hi)]), lift, lift),
           colour=colour)
