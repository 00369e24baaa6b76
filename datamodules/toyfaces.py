"""Toy faces: a procedural, seeded, download-free face domain (numpy + PIL only).

Every sample is a pure function of (seed, split, index). A face is a small 3-D model: the head is an ellipsoid with
a parametric jaw, the facial features are drawn on its surface, the nose sticks out of it, ears, hair volume, hat
and glasses sit around it. Turning the head (yaw, about the vertical axis) is an exact rotation of that model
followed by an orthographic projection, so eyes, nose and mouth slide sideways with foreshortening, the far ear
disappears behind the head and features past the far limb fold onto the silhouette. `render_face` paints the model
with a Lambert shading of the head and anti-aliases by drawing at 2x or 4x and box-filtering down;
`render_sketch` draws the same geometry as black lines on white (painter's order, so hidden lines stay hidden).

Used for a small StyleGAN2 prior and for pSp demos: super-resolution (degrade `image`), sketch-to-face
(`sketch` -> `image`) and frontalization (`image` -> `frontal`).

Coordinates: the image spans [-1, 1] in x (right) and y (up); z points at the viewer. A positive yaw turns the
face towards the image's right.
"""
from __future__ import annotations

import colorsys
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

MIN_SIZE, MAX_SIZE = 16, 256  # supported output sizes (pixels, square)
SPLITS = {"train": 0, "val": 1, "test": 2}
DOMAIN_TAG = 7015  # mixed into every seed so that toy faces never share a random stream with other generators
HAIR_STYLES = ("short", "long", "bald", "fringe", "curly")
HAIR_STYLE_P = (0.3, 0.25, 0.12, 0.18, 0.15)
HATS = ("none", "beanie", "brim")
HAT_P = (0.86, 0.07, 0.07)
GLASSES_P = 0.25  # probability of glasses
EARRINGS_P = 0.3  # probability of earrings (hidden under long hair)
OPEN_MOUTH_P = 0.35  # probability that a smiling mouth shows teeth
BEARD_P, MOUSTACHE_P = 0.1, 0.1  # probabilities of facial hair (independent)
BLUSH_P = 0.3  # probability of rosy cheeks

RGB = Tuple[int, int, int]
SKIN_TONES: Tuple[RGB, ...] = ((255, 226, 200), (241, 196, 164), (226, 174, 134), (200, 138, 100),
                               (164, 108, 74), (118, 76, 52), (84, 56, 40))
HAIR_COLOURS: Tuple[RGB, ...] = ((24, 20, 20), (58, 38, 28), (100, 66, 40), (148, 106, 66), (214, 178, 118),
                                 (146, 62, 32), (160, 158, 156), (222, 220, 214))
HAIR_COLOUR_P = (0.24, 0.22, 0.16, 0.1, 0.1, 0.07, 0.06, 0.05)
IRIS_COLOURS: Tuple[RGB, ...] = ((88, 54, 30), (48, 30, 20), (66, 116, 170), (76, 118, 70), (116, 128, 140),
                                 (128, 98, 50))
FRAME_COLOURS: Tuple[RGB, ...] = ((20, 20, 22), (90, 56, 30), (196, 160, 70), (150, 30, 40), (40, 60, 120))


@dataclass(frozen=True)
class FaceParams:
    """Everything that defines one toy face. Lengths are in half-image units (the image spans [-1, 1])."""

    # head
    head_w: float  # half-width of the head ellipsoid
    head_h: float  # half-height of the head ellipsoid
    head_d: float  # depth of the head as a multiple of its width (> 1: deeper than wide)
    jaw: float  # exponent of the lower-face profile: 1.7 pointed chin .. 3.0 square jaw
    chin: float  # extra taper of the lower face towards the chin (0 = none)
    cx: float  # head centre, x
    cy: float  # head centre, y
    skin: RGB
    # hair
    hair_style: str  # one of HAIR_STYLES
    hair_colour: RGB
    hair_volume: float  # how far the hair stands off the skull (fraction of the head size)
    hairline: float  # height of the front hairline on the head (-1 chin .. 1 crown)
    hair_sweep: float  # asymmetry of the hairline / fringe (a side parting)
    hair_length: float  # long hair: how far below the head centre it falls (head heights)
    # eyes and brows
    eye_w: float  # half-width of one eye
    eye_aspect: float  # eye half-height / half-width
    eye_spacing: float  # x distance of each eye centre from the face's midline
    eye_y: float  # height of the eyes relative to the head centre
    eye_tilt: float  # slant of the eyes (outer corners up when > 0)
    gaze: float  # horizontal offset of the irises within the eyes (fraction of eye width)
    iris_colour: RGB
    brow_thickness: float
    brow_angle: float  # degrees; > 0 raises the outer ends
    brow_gap: float  # height of the brows above the eye centres
    brow_colour: RGB
    # nose and mouth
    nose_length: float  # from the eye line down to the nose tip
    nose_width: float  # half-width of the nostril wings
    nose_depth: float  # how far the tip sticks out of the face
    mouth_w: float  # half-width of the mouth
    mouth_gap: float  # from the nose tip down to the mouth line
    mouth_curve: float  # > 0 smile (corners up), < 0 frown
    mouth_open: bool  # a smiling mouth that shows teeth
    lip_thickness: float
    lip_colour: RGB
    blush: int  # opacity (0..255) of rosy cheeks, 0 = none
    beard: bool
    moustache: bool
    # accessories
    glasses: bool
    glasses_round: bool  # round lenses, else rectangular
    glasses_colour: RGB
    hat: str  # one of HATS
    hat_colour: RGB
    hat_band_colour: RGB
    earrings: bool
    earring_colour: RGB
    # scene
    clothes_colour: RGB
    bg_colour_a: RGB
    bg_colour_b: RGB
    bg_angle: float  # direction of the background gradient (degrees)
    light_azimuth: float  # light direction, degrees (> 0 from the image right)
    light_elevation: float  # light direction, degrees above the horizon
    yaw: float  # head rotation about the vertical axis, degrees (> 0 faces the image right)


def _pick(rng: np.random.Generator, options, p=None):
    return options[int(rng.choice(len(options), p=p))]


def _jitter(rng: np.random.Generator, colour: RGB, amount: float) -> RGB:
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in colour)


def _hsv(h: float, s: float, v: float) -> RGB:
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def _scale(colour: RGB, k: float) -> RGB:
    return tuple(min(max(int(c * k), 0), 255) for c in colour)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def sample_params(rng: np.random.Generator, max_yaw: float = 30.0) -> FaceParams:
    """Draw one face from the toy-face distribution; the yaw is uniform in [-max_yaw, max_yaw] degrees."""
    u = rng.uniform
    head_w = u(0.36, 0.44)
    head_h = head_w * u(1.22, 1.42)
    tone = u(0, len(SKIN_TONES) - 1)
    lo = int(tone)
    skin = _jitter(rng, _mix(SKIN_TONES[lo], SKIN_TONES[min(lo + 1, len(SKIN_TONES) - 1)], tone - lo), 5)
    style = _pick(rng, HAIR_STYLES, HAIR_STYLE_P)
    hair_colour = _jitter(rng, _pick(rng, HAIR_COLOURS, HAIR_COLOUR_P), 8)
    if rng.random() < 0.04:  # a rare dyed colour
        hair_colour = _hsv(u(0, 1), u(0.5, 0.8), u(0.5, 0.9))
    brow_colour = _scale(hair_colour, 0.8) if style != "bald" else _scale(skin, 0.45)
    if sum(hair_colour) > 540:  # white hair keeps visible (grey) brows
        brow_colour = (130, 126, 122)
    eye_w = u(0.068, 0.09)
    curve = u(-0.015, 0.05)
    lip = _mix(_scale(skin, 0.82), (176, 70, 80), u(0.25, 0.6))
    hue = u(0, 1)
    bg_a = _hsv(hue, u(0.1, 0.5), u(0.35, 0.95))
    bg_b = _hsv(hue + u(-0.15, 0.15), u(0.1, 0.5), u(0.35, 0.95))
    return FaceParams(
        head_w=head_w, head_h=head_h, head_d=u(1.0, 1.2), jaw=u(1.7, 3.0), chin=u(0.0, 0.22),
        cx=u(-0.04, 0.04), cy=u(0.1, 0.17), skin=skin,
        hair_style=style, hair_colour=hair_colour, hair_volume=u(0.03, 0.08) if style != "curly" else u(0.12, 0.2),
        hairline=u(0.55, 0.68) if style != "fringe" else u(0.3, 0.4), hair_sweep=u(-0.12, 0.12),
        hair_length=u(1.3, 2.0),
        eye_w=eye_w, eye_aspect=u(0.45, 0.62), eye_spacing=head_w * u(0.38, 0.46), eye_y=head_h * u(0.0, 0.1),
        eye_tilt=u(-0.12, 0.15), gaze=u(-0.15, 0.15), iris_colour=_jitter(rng, _pick(rng, IRIS_COLOURS), 8),
        brow_thickness=u(0.016, 0.034), brow_angle=u(-14, 16), brow_gap=u(0.07, 0.1), brow_colour=brow_colour,
        nose_length=head_h * u(0.3, 0.4), nose_width=u(0.045, 0.07), nose_depth=head_w * u(0.16, 0.3),
        mouth_w=u(0.085, 0.135), mouth_gap=head_h * u(0.16, 0.22), mouth_curve=curve,
        mouth_open=bool(curve > 0.02 and rng.random() < OPEN_MOUTH_P), lip_thickness=u(0.014, 0.026),
        lip_colour=lip, blush=int(rng.integers(25, 60)) if rng.random() < BLUSH_P else 0,
        beard=bool(rng.random() < BEARD_P), moustache=bool(rng.random() < MOUSTACHE_P),
        glasses=bool(rng.random() < GLASSES_P), glasses_round=bool(rng.random() < 0.5),
        glasses_colour=_pick(rng, FRAME_COLOURS), hat=_pick(rng, HATS, HAT_P),
        hat_colour=_hsv(u(0, 1), u(0.3, 0.8), u(0.3, 0.85)), hat_band_colour=_hsv(u(0, 1), u(0.2, 0.7), u(0.2, 0.9)),
        earrings=bool(rng.random() < EARRINGS_P), earring_colour=_pick(rng, ((222, 184, 70), (200, 200, 210))),
        clothes_colour=_hsv(u(0, 1), u(0.15, 0.8), u(0.2, 0.85)),
        bg_colour_a=bg_a, bg_colour_b=bg_b, bg_angle=u(0, 360),
        light_azimuth=u(-55, 55), light_elevation=u(15, 45),
        yaw=u(-max_yaw, max_yaw),
    )


# ------------------------------------------------------------------------------------------------ geometry

VIEW_ZOOM, VIEW_Y = 1.3, 0.05  # the camera frames the model: image = zoom * (model - (0, VIEW_Y))


class _Head:
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
        return self.A * self.profile1((y - self.p.cy) / self.h)


# ------------------------------------------------------------------------------------------------ draw list
# One list of shapes in painter's order serves both renderers. Each shape: kind ("poly" | "line"), a slice of the
# scene's points, RGBA colour, line width (model units), how the sketch draws it, and whether the head's shading
# applies to it. Sketch modes: "shape" white fill + black outline, "open" outline only, "ink" black fill, "line"
# black line, "hide" white fill (hides what is behind, no line), None (colour only).


@dataclass
class _Shape:
    kind: str
    start: int
    stop: int
    colour: Tuple[int, int, int, int]
    width: float = 0.0
    sketch: Optional[str] = "shape"
    shade: bool = True


class _Scene:
    """Collects shapes whose points come in four kinds and projects all points of a kind in one go:
    "image" (already posed), "face" (frontal position on the surface, optional lift), "angles" (longitude and
    height on the head grown by a lift), "raised" (frontal position pushed forward off the surface)."""

    KINDS = ("image", "face", "angles", "raised")

    def __init__(self, g: _Head):
        self.g = g
        self.shapes: List[Tuple[str, _Shape]] = []
        self.parts: Dict[str, List[Tuple[np.ndarray, ...]]] = {k: [] for k in self.KINDS}
        self.count = dict.fromkeys(self.KINDS, 0)

    def add(self, how: str, cols, kind="poly", colour=(0, 0, 0, 255), width=0.0, sketch="shape", shade=True):
        n = len(cols[0])
        cols = tuple(c if isinstance(c, np.ndarray) else np.full(n, c) for c in cols)
        start = self.count[how]
        self.count[how] += n
        self.parts[how].append(cols)
        self.shapes.append((how, _Shape(kind, start, start + n, colour, width, sketch, shade)))

    def finish(self) -> Tuple[List[_Shape], np.ndarray]:
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


def _rgba(c: RGB, a: int = 255) -> Tuple[int, int, int, int]:
    return (int(c[0]), int(c[1]), int(c[2]), a)


_UNIT = {n: (np.cos(np.linspace(0, 2 * np.pi, n, endpoint=False)), np.sin(np.linspace(0, 2 * np.pi, n, endpoint=False)))
         for n in (8, 10, 12, 16, 24, 28, 32)}


def _ellipse(cx, cy, rx, ry, n=24):
    c, s = _UNIT[n]
    return cx + rx * c, cy + ry * s


def _hairline(p: FaceParams):
    """Height v of the hairline as a function of the longitude t (front, temples, above the ears, nape)."""
    style = p.hair_style
    front = p.hairline
    side = {"long": -0.55, "curly": -0.05, "fringe": 0.12}.get(style, 0.15)
    back = {"long": -0.95}.get(style, -0.4)
    temple = front - 0.12 if style in ("short", "curly") else front

    def v_of_t(t):
        a = np.abs(t) * (2 / np.pi)
        s1 = np.minimum(np.maximum((a - 0.25) / 0.75, 0), 1)
        s1 = s1 * s1 * (3 - 2 * s1)
        s2 = np.minimum(np.maximum(a - 1.0, 0), 1)
        v = np.where(a < 1, front + (temple - front) * np.minimum(a * 2, 1) * (1 - s1) + (side - front) * s1,
                     side + (back - side) * s2)
        v = v + p.hair_sweep * np.minimum(np.maximum(t, -1.2), 1.2) * (a < 1.2)
        if style == "fringe":  # a jagged fringe edge
            v = v + 0.035 * np.abs(np.sin(t * 11)) * (a < 0.8)
        return v

    return v_of_t


_HALF = np.pi / 2
_LIN = {n: np.linspace(0, 1, n) for n in range(2, 65)}  # shared parameter ramps


def _cap(sc: _Scene, v_of_t, lift: float, colour, n=40, bump=0.0, sketch="shape", shade=True):
    """The visible part of the region above the curve v = v_of_t(t) on the head grown by (1 + lift): the visible
    stretch of the curve, then the silhouette up over the crown and back down."""
    g = sc.g
    t = np.pi * _LIN[n] - _HALF - g.delta  # longitudes of the visible stretch
    v_edge = np.minimum(np.maximum(v_of_t(t), -1), 1)
    m = n // 2
    right = v_edge[-1] + (1 - v_edge[-1]) * _LIN[m]
    left = 1 + (v_edge[0] - 1) * _LIN[m]
    rim = np.full(n + 2 * m, lift)
    if bump:  # curly hair: a bumpy outline
        rim[n:] += bump * np.abs(np.sin(np.linspace(0, 7 * np.pi, 2 * m)))
    ts = np.concatenate([t, np.full(m, _HALF - g.delta), np.full(m, -_HALF - g.delta)])
    sc.add("angles", (ts, np.concatenate([v_edge, right, left]), rim, lift), colour=colour, sketch=sketch,
           shade=shade)


def _band(sc: _Scene, v_lo: float, v_hi: float, lift: float, colour, n=20):
    """The visible part of the strip v_lo < v < v_hi all around the head grown by (1 + lift) (a hat band)."""
    t = np.pi * _LIN[n] - _HALF - sc.g.delta
    sc.add("angles", (np.concatenate([t, t[::-1]]), np.concatenate([np.full(n, v_lo), np.full(n, v_hi)]), lift, lift),
           colour=colour)


def _face_scene(p: FaceParams, yaw: float) -> Tuple[List[_Shape], np.ndarray]:
    g = _Head(p, yaw)
    sc = _Scene(g)
    skin, hair = p.skin, p.hair_colour
    ink = 0.012  # a thin feature line (model units)

    # body: shoulders and neck; long hair falls behind them
    sh_y = p.cy - p.head_h * 1.32
    if p.hair_style == "long":
        top_v = -0.2 + 1.2 * _LIN[14]
        off = p.cx - 0.45 * g.d * g.sin  # the back of the head moves against the face
        rim = (1 + p.hair_volume) * g.A * g.profile(top_v) * 1.05
        top_y = p.cy + (1 + p.hair_volume) * p.head_h * top_v
        bottom = p.cy - p.head_h * p.hair_length
        k = _LIN[16]
        down_y = top_y[0] + (bottom - top_y[0]) * k[:8]
        flare = rim[0] * (1 + 0.25 * k[:8] ** 1.5)  # the sides widen towards the tips
        tips_x = flare[-1] * (1 - 2 * k)
        tips_y = bottom - 0.05 * np.abs(np.sin(k * np.pi * 4.5)) - 0.04 * np.sin(k * np.pi)
        sc.add("image", (np.concatenate([off + rim, off - rim[::-1], off - flare, off - tips_x, off + flare[::-1]]),
                         np.concatenate([top_y, top_y[::-1], down_y, tips_y, down_y[::-1]])),
               colour=_rgba(_scale(hair, 0.82)))
    sc.add("image", (np.array([-1.2, -0.95, -0.62, -0.3, 0.3, 0.62, 0.95, 1.2]) * 0.95 + p.cx * 0.5,
                     np.array([-1.1, -0.9, sh_y - 0.02, sh_y + 0.03, sh_y + 0.03, sh_y - 0.02, -0.9, -1.1])),
           colour=_rgba(p.clothes_colour), shade=False)
    neck_w, neck_top = p.head_w * 0.42, p.cy - p.head_h * 0.55
    sc.add("image", (np.array([-1, -1, -0.45, 0, 0.45, 1, 1]) * neck_w + p.cx * 0.8,
                     np.array([neck_top, sh_y + 0.01, sh_y - 0.03, sh_y - 0.11, sh_y - 0.03, sh_y + 0.01, neck_top])),
           colour=_rgba(_scale(skin, 0.86)), shade=False)
    sc.add("image", _ellipse(p.cx * 0.8, neck_top - 0.02, neck_w, 0.09), colour=_rgba(_scale(skin, 0.68)),
           sketch=None, shade=False)  # the shadow under the jaw

    # ears: a plate flaring back from the side of the head; behind the head unless turned towards the viewer
    front_ears, lobes = [], []
    if p.hair_style != "long":
        c16, s16 = _UNIT[16]
        ew, eh = 0.055, p.head_h * 0.2
        ear_y = p.eye_y - p.nose_length * 0.45
        across = ew * (1 - c16)  # from the root backwards and outwards
        flare_s, flare_c = math.sin(math.radians(40)), math.cos(math.radians(40))
        for side in (-1.0, 1.0):
            X, Y, _ = g.rotate(side * (g.w * 0.97 + across * flare_s), ear_y + eh * s16 - 0.2 * eh * (s16 < 0),
                               -0.08 * g.d - across * flare_c)
            lobes.append(g.rotate(side * (g.w * 0.97 + 0.3 * ew * flare_s), ear_y - 1.15 * eh, -0.08 * g.d))
            if -side * g.sin > 0.05:  # the ear's outward normal points at the viewer: drawn over the head
                front_ears.append((X, Y))
            else:
                sc.add("image", (X, Y), colour=_rgba(_scale(skin, 0.95)))

    # head
    v = np.sin(np.pi * _LIN[24] - _HALF)
    sc.add("angles", (np.concatenate([np.full(24, _HALF - g.delta), np.full(24, -_HALF - g.delta)]),
                      np.concatenate([v, v[::-1]]), 0.0, 0.0), colour=_rgba(skin))
    for X, Y in front_ears:
        sc.add("image", (X, Y), colour=_rgba(_scale(skin, 0.95)))
        sc.add("image", (X[[3, 5, 7, 9, 11]], Y[[3, 5, 7, 9, 11]]), kind="line", colour=_rgba(_scale(skin, 0.7)),
               width=ink * 0.8)
    if p.earrings:
        for lx, ly, lz in lobes:
            if lz > -0.02 or abs(lx - p.cx) > g.half_width(ly):  # not hidden behind the head
                sc.add("image", _ellipse(lx, ly - 0.035, 0.022, 0.03, 12), colour=_rgba(p.earring_colour))

    # hair: a cap over the skull and a few darker strands from the crown towards the hairline
    if p.hair_style != "bald":
        v_edge = _hairline(p)
        _cap(sc, v_edge, p.hair_volume, _rgba(hair), bump=0.06 if p.hair_style == "curly" else 0.0)
        t0 = np.linspace(-1.1, 1.1, 7)
        ends = v_edge(t0) + 0.12
        for k in range(7):
            t = t0[k] + 0.15 * _LIN[8] * (1.0 if t0[k] >= 0 else -1.0)
            sc.add("angles", (t, 0.92 + (ends[k] - 0.92) * _LIN[8], p.hair_volume * 0.9, p.hair_volume * 0.9),
                   kind="line", colour=_rgba(_scale(hair, 0.8)), width=ink * 0.7, sketch=None)

    # brows
    s = _LIN[9]
    ang = math.radians(p.brow_angle)
    th = p.brow_thickness * (1.1 - 0.6 * s)
    for side in (-1.0, 1.0):
        bx = p.cx + side * (p.eye_spacing - p.eye_w * 0.95 + p.eye_w * 2.1 * s)
        by = p.cy + p.eye_y + p.brow_gap + p.eye_w * 2.1 * s * math.sin(ang) + 0.02 * np.sin(s * np.pi)
        sc.add("face", (np.concatenate([bx, bx[::-1]]), np.concatenate([by + th / 2, (by - th / 2)[::-1]]), 0.0),
               colour=_rgba(p.brow_colour), sketch="ink")

    # eyes: almond, iris clipped to it, pupil, highlight, upper lid and its crease
    c24, s24 = _UNIT[24]
    ew, eh = p.eye_w, p.eye_w * p.eye_aspect
    ir = eh * 0.98
    lx = ew * c24
    ix = p.gaze * ew + ir * c24
    top = eh * np.sqrt(np.maximum(1 - (ix / ew) ** 2, 0))
    iy = np.minimum(np.maximum(ir * s24, -0.7 * top), top)
    lid_x, lid_y = lx[:13], eh * s24[:13]
    for side in (-1.0, 1.0):
        ex, ey = p.cx + side * p.eye_spacing, p.cy + p.eye_y
        tilt = side * p.eye_tilt
        ly = eh * s24 * np.where(s24 > 0, 1.0, 0.7) + tilt * lx
        sc.add("face", (ex + lx, ey + ly, 0.0), colour=(246, 244, 240, 255))
        sc.add("face", (ex + ix, ey + iy + tilt * ix, 0.0), colour=_rgba(p.iris_colour), sketch="open")
        gx = ex + p.gaze * ew
        sc.add("face", (*_ellipse(gx, ey + tilt * p.gaze * ew, ir * 0.45, ir * 0.45, 12), 0.0),
               colour=(12, 10, 10, 255), sketch="ink")
        sc.add("face", (*_ellipse(gx + ir * 0.3, ey + ir * 0.3, ir * 0.2, ir * 0.2, 8), 0.0),
               colour=(250, 250, 250, 230), sketch=None)
        sc.add("face", (ex + lid_x * 1.04, ey + lid_y + tilt * lid_x + 0.004, 0.0), kind="line",
               colour=(30, 22, 20, 255), width=ink * 1.4, sketch="line")
        sc.add("face", (ex + lid_x * 0.9, ey + (lid_y + tilt * lid_x) * 0.9 + eh * 0.9, 0.0), kind="line",
               colour=_rgba(_scale(skin, 0.78)), width=ink * 0.8, sketch=None)

    # nose: two side faces from the bridge to the tip and the wings, lit by the light; nostrils; tip highlight
    ny = p.cy + p.eye_y - p.nose_length
    bridge_y = p.cy + p.eye_y - 0.03
    lx_, _, lz_ = _light(p)
    faces = []
    for side in (-1.0, 1.0):
        px = p.cx + np.array([0.0, 0.0, side * p.nose_width, side * p.nose_width * 0.8, side * 0.02])
        py = np.array([bridge_y, ny, ny + 0.01, ny + 0.05, bridge_y - 0.02])
        pe = np.array([0.02, 1.0, 0.3, 0.15, 0.05]) * p.nose_depth
        nx, nz = side * 0.8 * g.cos + 0.6 * g.sin, -side * 0.8 * g.sin + 0.6 * g.cos  # the face's normal, posed
        lit = 0.72 + 0.4 * max(0.0, nx * lx_ + nz * lz_)
        faces.append((nz, (px, py, pe), _rgba(_scale(skin, lit))))
    for _, cols, colour in sorted(faces, key=lambda f: f[0]):  # the face turned away first
        sc.add("raised", cols, colour=colour, sketch="hide")
    far = 1.0 if g.sin > 0 else -1.0  # the side whose contour shows is the one turned away
    if abs(g.sin) > 0.1:
        sc.add("raised", (np.array([p.cx + 0.012 * far, p.cx + 0.012 * far, p.cx + far * p.nose_width * 0.6]),
                          np.array([bridge_y - 0.02, ny + 0.01, ny + 0.03]), np.array([0.1, 0.95, 0.3]) * p.nose_depth),
               kind="line", colour=_rgba(_scale(skin, 0.72)), width=ink * 0.8, sketch="line")
    for side in (-1.0, 1.0):
        sc.add("raised", (*_ellipse(p.cx + side * p.nose_width * 0.5, ny - 0.012, p.nose_width * 0.32, 0.012, 10),
                          0.35 * p.nose_depth), colour=_rgba(_scale(skin, 0.42)), sketch="ink")
    sc.add("raised", (p.cx + np.array([-1.0, -0.6, 0.0, 0.6, 1.0]) * p.nose_width,
                      ny + np.array([0.012, -0.016, -0.022, -0.016, 0.012]),
                      np.array([0.25, 0.5, 0.75, 0.5, 0.25]) * p.nose_depth),
           kind="line", colour=_rgba(_scale(skin, 0.6)), width=ink * 0.9, sketch="line")
    sc.add("raised", (*_ellipse(p.cx, ny + 0.012, p.nose_width * 0.3, 0.016, 10), 0.95 * p.nose_depth),
           colour=(255, 255, 255, 60), sketch=None)

    my = ny - p.mouth_gap
    if p.blush:
        for side in (-1.0, 1.0):
            sc.add("face", (*_ellipse(p.cx + side * (p.eye_spacing + 0.02), (ny + my) / 2 + 0.02, 0.07, 0.045, 16),
                            0.0), colour=(235, 80, 90, p.blush), sketch=None)
    if p.beard:  # the jaw and chin below a line from the ears round the mouth
        v_top = p.eye_y / p.head_h - 0.25
        v_side = np.linspace(v_top, -1.0, 12)
        side_x = p.head_w * g.profile(v_side) * 0.995
        inner_x = np.array([0.75 * p.head_w, p.mouth_w + 0.035, p.mouth_w * 0.5, 0.0])
        inner_y = np.array([ny - 0.02, my + 0.03, ny - 0.035, ny - 0.03])
        bx = np.concatenate([-side_x, side_x[::-1], inner_x, -inner_x[::-1]])
        by = np.concatenate([p.cy + p.head_h * v_side, p.cy + p.head_h * v_side[::-1], inner_y, inner_y[::-1]])
        sc.add("face", (p.cx + bx, by, 0.01), colour=_rgba(_scale(hair, 0.9)))

    # mouth: lips, then an opening with teeth or a closed line
    mx = 2 * _LIN[15] - 1
    bulge = (1 - mx ** 2) ** 0.7
    centre = my + p.mouth_curve * (mx ** 2 - 0.3)
    x = p.cx + p.mouth_w * mx
    upper = centre + p.lip_thickness * 0.8 * bulge + 0.006 * np.exp(-((np.abs(mx) - 0.25) / 0.18) ** 2)
    lower = centre - p.lip_thickness * 1.2 * bulge
    if p.mouth_open:
        open_h = p.lip_thickness * 1.6 * (1 - mx ** 2)
        lower = lower - open_h
    sc.add("face", (np.concatenate([x, x[::-1]]), np.concatenate([upper, lower[::-1]]), 0.0),
           colour=_rgba(p.lip_colour))
    if p.mouth_open:
        xi = p.cx + p.mouth_w * 0.96 * mx
        sc.add("face", (np.concatenate([xi, xi[::-1]]), np.concatenate([centre, (centre - open_h - 0.002)[::-1]]), 0.0),
               colour=(70, 20, 24, 255), sketch="ink")
        xt = p.cx + p.mouth_w * 0.9 * mx
        sc.add("face", (np.concatenate([xt, xt[::-1]]),
                        np.concatenate([centre - 0.002, (centre - 0.45 * open_h)[::-1]]), 0.0),
               colour=(240, 238, 230, 255))
    else:
        sc.add("face", (x, centre, 0.0), kind="line", colour=_rgba(_scale(p.lip_colour, 0.5)), width=ink * 1.1,
               sketch="line")

    if p.moustache:
        mx2 = 2 * _LIN[13] - 1
        mid = ny - 0.042 - 0.035 * np.abs(mx2) ** 1.5  # droops towards the corners of the mouth
        half = 0.014 * (1 - 0.6 * mx2 ** 2) + 0.003
        xm = p.cx + (p.mouth_w + 0.025) * mx2
        sc.add("face", (np.concatenate([xm, xm[::-1]]), np.concatenate([mid + half, (mid - half)[::-1]]), 0.01),
               colour=_rgba(_scale(hair, 0.85)), sketch="ink")

    # glasses: lenses in front of the eyes, a bridge, the arms towards the ears
    if p.glasses:
        lift = 0.08
        frame = _rgba(p.glasses_colour)
        rw, rh = p.eye_w * 1.45, p.eye_w * 1.1
        c28, s28 = _UNIT[28]
        if p.glasses_round:
            gx, gy = rw * c28, rh * s28
        else:
            gx, gy = rw * np.sign(c28) * np.abs(c28) ** 0.3, rh * 0.9 * np.sign(s28) * np.abs(s28) ** 0.3
        gx, gy = np.append(gx, gx[0]), np.append(gy, gy[0])
        for side in (-1.0, 1.0):
            ex, ey = p.cx + side * p.eye_spacing, p.cy + p.eye_y - 0.005
            sc.add("face", (ex + gx, ey + gy, lift), colour=(200, 225, 235, 50), sketch=None)
            sc.add("face", (ex + gx, ey + gy, lift), kind="line", colour=frame, width=ink * 1.6, sketch="line")
            t_out = g.longitude1(ex + side * rw, ey)
            sc.add("angles", (t_out + (side * 1.9 - t_out) * _LIN[8], (ey + rh * 0.3 - p.cy) / p.head_h, lift, 0.0),
                   kind="line", colour=frame, width=ink * 1.3, sketch="line")
        sc.add("face", (p.cx + np.array([-1, -0.5, 0, 0.5, 1]) * (p.eye_spacing - rw),
                        p.cy + p.eye_y + 0.01 + np.array([0, 0.012, 0.016, 0.012, 0]), lift),
               kind="line", colour=frame, width=ink * 1.4, sketch="line")

    # hats
    if p.hat == "beanie":
        v_band = p.hairline - 0.12 if p.hair_style != "fringe" else p.hairline + 0.05
        lift = max(p.hair_volume, 0.05) + 0.06
        _cap(sc, lambda t: np.full_like(t, v_band), lift, _rgba(p.hat_colour))
        _band(sc, v_band, v_band + 0.18, lift + 0.02, _rgba(p.hat_band_colour))
        sc.add("image", _ellipse(p.cx, p.cy + (1 + lift) * p.head_h, 0.07, 0.06, 16), colour=_rgba(p.hat_band_colour))
    elif p.hat == "brim":
        v_band = max(p.hairline, 0.45)
        lift = max(p.hair_volume, 0.05) + 0.05
        brim_y = p.cy + (1 + lift) * p.head_h * v_band
        cw = (1 + lift) * g.A * g.profile1(v_band)
        bx, by = _ellipse(p.cx, brim_y, cw + 0.2, 0.06, 32)
        sc.add("image", (bx, by), colour=_rgba(_scale(p.hat_colour, 0.8)), shade=False)
        crown_h = p.head_h * 0.42
        arc = np.pi * _LIN[12]
        cxs = np.concatenate([[p.cx - cw * 0.95], p.cx - cw * 0.95 * 0.9 * np.cos(arc), [p.cx + cw * 0.95]])
        cys = np.concatenate([[brim_y], brim_y + crown_h + 0.04 * np.sin(arc) - 0.02 * (np.sin(arc) > 0.5), [brim_y]])
        sc.add("image", (cxs, cys), colour=_rgba(p.hat_colour), shade=False)
        sc.add("image", (np.concatenate([cxs[1:-1], cxs[-2:0:-1]]),
                         np.concatenate([np.full(12, brim_y), np.full(12, brim_y + 0.06)])),
               colour=_rgba(p.hat_band_colour), shade=False)
        front = by <= brim_y
        sc.add("image", (bx[front], by[front]), colour=_rgba(_scale(p.hat_colour, 0.9)), shade=False)
    return sc.finish()


def _light(p: FaceParams) -> Tuple[float, float, float]:
    az, el = math.radians(p.light_azimuth), math.radians(p.light_elevation)
    return (math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el))


# ------------------------------------------------------------------------------------------------ renderers


def _check_size(size) -> int:
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


def _shading(p: FaceParams, g: _Head, size: int) -> np.ndarray:
    """Lambert shading of the head ellipsoid (1 = unchanged), extended smoothly past its outline."""
    c = _grid(size)
    v = np.clip((VIEW_Y - c - p.cy) / p.head_h, -1, 1)[:, None]
    half = np.maximum(g.A * g.profile(v), 1e-3)
    s = np.clip((c[None, :] - p.cx) / half, -1, 1)
    nx = s * np.sqrt(1 - v * v)
    nz = np.sqrt(np.clip(1 - nx * nx - v * v, 0, 1))
    lx, ly, lz = _light(p)
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
    mask = Image.new("L", (res, res), 0)
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
    shade = _shading(p, _Head(p, yaw), size)[..., None]
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
    size = _check_size(size)
    yaw = params.yaw if yaw is None else float(yaw)
    return _paint(params, yaw, _face_scene(params, yaw), size)


def render_frontal(params: FaceParams, size: int) -> np.ndarray:
    """The frontal truth: the same face with yaw 0."""
    return render_face(params, size, yaw=0.0)


def render_sketch(params: FaceParams, size: int, yaw: Optional[float] = None) -> np.ndarray:
    """A line drawing of the same geometry, (size, size) uint8: black lines on white (hidden lines removed)."""
    size = _check_size(size)
    yaw = params.yaw if yaw is None else float(yaw)
    return _draw_sketch(_face_scene(params, yaw), size)


def render_all(params: FaceParams, size: int) -> Dict[str, np.ndarray]:
    """{"image", "frontal", "sketch"} of one face, sharing the posed geometry between image and sketch."""
    size = _check_size(size)
    posed = _face_scene(params, params.yaw)
    return {"image": _paint(params, params.yaw, posed, size), "frontal": render_frontal(params, size),
            "sketch": _draw_sketch(posed, size)}



# ------------------------------------------------------------------------------------------------ data set


def face_params(seed: int, split: str, index: int, max_yaw: float = 30.0) -> FaceParams:
    """The parameters of sample `index` of `split`: a pure function of its arguments."""
    if split not in SPLITS:
        raise ValueError(f"toy faces: expected split in {list(SPLITS)}, got {split!r}")
    if index < 0 or seed < 0:
        raise ValueError(f"toy faces: expected seed >= 0 and index >= 0, got seed={seed}, index={index}")
    return sample_params(np.random.default_rng([DOMAIN_TAG, int(seed), SPLITS[split], int(index)]), max_yaw)


class ToyFaces:
    """`n` toy faces of `size` px; item i = {"image" (posed, HxWx3 uint8), "frontal" (HxWx3 uint8), "sketch"
    (HxW uint8, of the posed face), "params" (FaceParams)}, determined by (seed, split, i). With `cache=True`
    every rendered item is kept in preallocated arrays; `arrays()` renders all of them at once."""

    KEYS = ("image", "frontal", "sketch")

    def __init__(self, n: int, size: int, seed: int = 0, split: str = "train", max_yaw: float = 30.0,
                 cache: bool = False):
        if split not in SPLITS:
            raise ValueError(f"toy faces: expected split in {list(SPLITS)}, got {split!r}")
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"toy faces: expected n >= 1 samples, got {n!r}")
        if not 0 <= max_yaw <= 90:
            raise ValueError(f"toy faces: expected max_yaw in [0, 90] degrees, got {max_yaw}")
        self.n, self.size, self.seed, self.split, self.max_yaw = int(n), _check_size(size), int(seed), split, max_yaw
        self._cache: Optional[Dict[str, np.ndarray]] = None
        if cache:
            s = self.size
            self._cache = {"image": np.zeros((self.n, s, s, 3), np.uint8),
                           "frontal": np.zeros((self.n, s, s, 3), np.uint8),
                           "sketch": np.zeros((self.n, s, s), np.uint8)}
            self._done = np.zeros(self.n, bool)

    def __len__(self) -> int:
        return self.n

    def params(self, index: int) -> FaceParams:
        return face_params(self.seed, self.split, self._index(index), self.max_yaw)

    def _index(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"toy faces: index {index} out of range for {self.n} samples")
        return i

    def render(self, index: int) -> Dict[str, np.ndarray]:
        return render_all(self.params(index), self.size)

    def __getitem__(self, index: int) -> Dict[str, object]:
        i = self._index(index)
        if self._cache is None:
            item = self.render(i)
        else:
            if not self._done[i]:
                for k, v in self.render(i).items():
                    self._cache[k][i] = v
                self._done[i] = True
            item = {k: self._cache[k][i].copy() for k in self.KEYS}
        item["params"] = self.params(i)
        return item

    def arrays(self) -> Dict[str, np.ndarray]:
        """All samples as stacked arrays {"image": (n, H, W, 3), "frontal": (n, H, W, 3), "sketch": (n, H, W)}."""
        if self._cache is None:
            s = self.size
            self._cache = {"image": np.zeros((self.n, s, s, 3), np.uint8),
                           "frontal": np.zeros((self.n, s, s, 3), np.uint8),
                           "sketch": np.zeros((self.n, s, s), np.uint8)}
            self._done = np.zeros(self.n, bool)
        for i in np.flatnonzero(~self._done):
            for k, v in self.render(int(i)).items():
                self._cache[k][i] = v
            self._done[i] = True
        return self._cache


class ToyFacesTensors:
    """A map-style torch view of `ToyFaces`: item i = {key: float tensor in [-1, 1], (C, H, W)} for `keys`
    (sketch has one channel). Torch is imported on first use only."""

    def __init__(self, faces: ToyFaces, keys: Iterable[str] = ("image",)):
        keys = tuple(keys)
        bad = [k for k in keys if k not in ToyFaces.KEYS]
        if bad or not keys:
            raise ValueError(f"toy faces: expected keys from {list(ToyFaces.KEYS)}, got {list(keys)}")
        self.faces, self.keys = faces, keys

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, index: int):
        import torch

        item = self.faces[index]
        out = {}
        for k in self.keys:
            a = item[k] if item[k].ndim == 3 else item[k][..., None]
            out[k] = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float() / 127.5 - 1.0
        return out


def write_toyfaces(root, n: int, size: int, seed: int = 0, split: str = "train", max_yaw: float = 30.0) -> Path:
    """Write `n` faces as PNGs: root/images, root/frontal, root/sketch (same file stems, e.g. 00042.png) and
    root/params.jsonl (one FaceParams per line, in index order)."""
    faces = ToyFaces(n, size, seed, split, max_yaw)
    root = Path(root)
    dirs = {"image": root / "images", "frontal": root / "frontal", "sketch": root / "sketch"}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    with open(root / "params.jsonl", "w") as f:
        for i in range(n):
            item = faces[i]
            for k, d in dirs.items():
                Image.fromarray(item[k]).save(d / f"{i:05d}.png")
            f.write(json.dumps(asdict(item["params"])) + "\n")
    return root


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


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Toy faces: write a preview grid and measure the rendering speed.")
    ap.add_argument("--out", default="docs/toyfaces_preview.png")
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bench", action="store_true", help="also print faces/s at 64 px")
    args = ap.parse_args()
    print(preview(args.out, size=args.size, seed=args.seed))
    if args.bench:
        print(f"{benchmark(64):.0f} faces/s at 64 px")
