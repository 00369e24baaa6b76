"""The parts of a toy face as shapes on the posed head: `face_scene` adds body, ears, head, hair, brows, eyes, nose,
cheeks, beard, mouth, moustache, glasses and hat to one `Scene`, in painter's order (back to front), and returns
the projected draw list that both renderers paint. One function per part; the order of the calls in `face_scene`
is the drawing order, so moving a call changes the images.
"""
from __future__ import annotations

import math
from typing import List, Tuple

import numpy as np

from datamodules.toyfaces.geometry import (HALF_PI, RAMP, UNIT_CIRCLE, Head, Scene, Shape, band, cap, ellipse,
                                           light_direction)
from datamodules.toyfaces.params import RGB, FaceParams, scale_colour

INK = 0.012  # width of a thin feature line (model units)


def _rgba(c: RGB, a: int = 255) -> Tuple[int, int, int, int]:
    return (int(c[0]), int(c[1]), int(c[2]), a)


def _nose_tip_y(p: FaceParams) -> float:
    return p.cy + p.eye_y - p.nose_length


def _mouth_y(p: FaceParams) -> float:
    return _nose_tip_y(p) - p.mouth_gap


def face_scene(p: FaceParams, yaw: float) -> Tuple[List[Shape], np.ndarray]:
    """The draw list of face `p` under `yaw` degrees: shapes in painter's order and their points (N, 2)."""
    sc = Scene(Head(p, yaw))
    if p.hair_style == "long":
        _long_hair_behind(sc, p)
    _body(sc, p)
    front_ears, lobes = _ears(sc, p) if p.hair_style != "long" else ([], [])
    _head(sc, p, front_ears, lobes)
    if p.hair_style != "bald":
        _hair(sc, p)
    _brows(sc, p)
    _eyes(sc, p)
    _nose(sc, p)
    if p.blush:
        _blush(sc, p)
    if p.beard:
        _beard(sc, p)
    _mouth(sc, p)
    if p.moustache:
        _moustache(sc, p)
    if p.glasses:
        _glasses(sc, p)
    if p.hat == "beanie":
        _beanie(sc, p)
    elif p.hat == "brim":
        _brimmed_hat(sc, p)
    return sc.finish()


def _long_hair_behind(sc: Scene, p: FaceParams) -> None:
    """Long hair falls behind the shoulders: one shape from the crown down to ragged tips."""
    g = sc.g
    top_v = -0.2 + 1.2 * RAMP[14]
    off = p.cx - 0.45 * g.d * g.sin  # the back of the head moves against the face
    rim = (1 + p.hair_volume) * g.A * g.profile(top_v) * 1.05
    top_y = p.cy + (1 + p.hair_volume) * p.head_h * top_v
    bottom = p.cy - p.head_h * p.hair_length
    k = RAMP[16]
    down_y = top_y[0] + (bottom - top_y[0]) * k[:8]
    flare = rim[0] * (1 + 0.25 * k[:8] ** 1.5)  # the sides widen towards the tips
    tips_x = flare[-1] * (1 - 2 * k)
    tips_y = bottom - 0.05 * np.abs(np.sin(k * np.pi * 4.5)) - 0.04 * np.sin(k * np.pi)
    sc.add("image", (np.concatenate([off + rim, off - rim[::-1], off - flare, off - tips_x, off + flare[::-1]]),
                     np.concatenate([top_y, top_y[::-1], down_y, tips_y, down_y[::-1]])),
           colour=_rgba(scale_colour(p.hair_colour, 0.82)))


def _body(sc: Scene, p: FaceParams) -> None:
    """Shoulders, neck and the shadow under the jaw."""
    sh_y = p.cy - p.head_h * 1.32
    sc.add("image", (np.array([-1.2, -0.95, -0.62, -0.3, 0.3, 0.62, 0.95, 1.2]) * 0.95 + p.cx * 0.5,
                     np.array([-1.1, -0.9, sh_y - 0.02, sh_y + 0.03, sh_y + 0.03, sh_y - 0.02, -0.9, -1.1])),
           colour=_rgba(p.clothes_colour), shade=False)
    neck_w, neck_top = p.head_w * 0.42, p.cy - p.head_h * 0.55
    sc.add("image", (np.array([-1, -1, -0.45, 0, 0.45, 1, 1]) * neck_w + p.cx * 0.8,
                     np.array([neck_top, sh_y + 0.01, sh_y - 0.03, sh_y - 0.11, sh_y - 0.03, sh_y + 0.01, neck_top])),
           colour=_rgba(scale_colour(p.skin, 0.86)), shade=False)
    sc.add("image", ellipse(p.cx * 0.8, neck_top - 0.02, neck_w, 0.09), colour=_rgba(scale_colour(p.skin, 0.68)),
           sketch=None, shade=False)  # the shadow under the jaw


def _ears(sc: Scene, p: FaceParams):
    """Ears: a plate flaring back from the side of the head. An ear turned away is drawn now (the head will cover
    it); returns the outlines of the ears turned towards the viewer (drawn over the head) and both lobes (posed
    x, y, depth) for earrings."""
    g = sc.g
    front_ears, lobes = [], []
    c16, s16 = UNIT_CIRCLE[16]
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
            sc.add("image", (X, Y), colour=_rgba(scale_colour(p.skin, 0.95)))
    return front_ears, lobes


def _head(sc: Scene, p: FaceParams, front_ears, lobes) -> None:
    """The head's silhouette, then the ears in front of it and the earrings that the head does not hide."""
    g = sc.g
    v = np.sin(np.pi * RAMP[24] - HALF_PI)
    sc.add("angles", (np.concatenate([np.full(24, HALF_PI - g.delta), np.full(24, -HALF_PI - g.delta)]),
                      np.concatenate([v, v[::-1]]), 0.0, 0.0), colour=_rgba(p.skin))
    for X, Y in front_ears:
        sc.add("image", (X, Y), colour=_rgba(scale_colour(p.skin, 0.95)))
        sc.add("image", (X[[3, 5, 7, 9, 11]], Y[[3, 5, 7, 9, 11]]), kind="line",
               colour=_rgba(scale_colour(p.skin, 0.7)), width=INK * 0.8)
    if p.earrings:
        for lx, ly, lz in lobes:
            if lz > -0.02 or abs(lx - p.cx) > g.half_width(ly):  # not hidden behind the head
                sc.add("image", ellipse(lx, ly - 0.035, 0.022, 0.03, 12), colour=_rgba(p.earring_colour))


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


def _hair(sc: Scene, p: FaceParams) -> None:
    """A cap over the skull down to the hairline and a few darker strands from the crown towards the hairline."""
    v_edge = _hairline(p)
    cap(sc, v_edge, p.hair_volume, _rgba(p.hair_colour), bump=0.06 if p.hair_style == "curly" else 0.0)
    t0 = np.linspace(-1.1, 1.1, 7)
    ends = v_edge(t0) + 0.12
    for k in range(7):
        t = t0[k] + 0.15 * RAMP[8] * (1.0 if t0[k] >= 0 else -1.0)
        sc.add("angles", (t, 0.92 + (ends[k] - 0.92) * RAMP[8], p.hair_volume * 0.9, p.hair_volume * 0.9),
               kind="line", colour=_rgba(scale_colour(p.hair_colour, 0.8)), width=INK * 0.7, sketch=None)


def _brows(sc: Scene, p: FaceParams) -> None:
    s = RAMP[9]
    ang = math.radians(p.brow_angle)
    th = p.brow_thickness * (1.1 - 0.6 * s)
    for side in (-1.0, 1.0):
        bx = p.cx + side * (p.eye_spacing - p.eye_w * 0.95 + p.eye_w * 2.1 * s)
        by = p.cy + p.eye_y + p.brow_gap + p.eye_w * 2.1 * s * math.sin(ang) + 0.02 * np.sin(s * np.pi)
        sc.add("face", (np.concatenate([bx, bx[::-1]]), np.concatenate([by + th / 2, (by - th / 2)[::-1]]), 0.0),
               colour=_rgba(p.brow_colour), sketch="ink")


def _eyes(sc: Scene, p: FaceParams) -> None:
    """Almond, iris clipped to it, pupil, highlight, upper lid and its crease."""
    c24, s24 = UNIT_CIRCLE[24]
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
        sc.add("face", (*ellipse(gx, ey + tilt * p.gaze * ew, ir * 0.45, ir * 0.45, 12), 0.0),
               colour=(12, 10, 10, 255), sketch="ink")
        sc.add("face", (*ellipse(gx + ir * 0.3, ey + ir * 0.3, ir * 0.2, ir * 0.2, 8), 0.0),
               colour=(250, 250, 250, 230), sketch=None)
        sc.add("face", (ex + lid_x * 1.04, ey + lid_y + tilt * lid_x + 0.004, 0.0), kind="line",
               colour=(30, 22, 20, 255), width=INK * 1.4, sketch="line")
        sc.add("face", (ex + lid_x * 0.9, ey + (lid_y + tilt * lid_x) * 0.9 + eh * 0.9, 0.0), kind="line",
               colour=_rgba(scale_colour(p.skin, 0.78)), width=INK * 0.8, sketch=None)


def _nose(sc: Scene, p: FaceParams) -> None:
    """Two side faces from the bridge to the tip and the wings, lit by the light; the contour of the side turned
    away; nostrils; the line under the tip; a highlight on the tip."""
    g = sc.g
    ny = _nose_tip_y(p)
    bridge_y = p.cy + p.eye_y - 0.03
    lx_, _, lz_ = light_direction(p)
    faces = []
    for side in (-1.0, 1.0):
        px = p.cx + np.array([0.0, 0.0, side * p.nose_width, side * p.nose_width * 0.8, side * 0.02])
        py = np.array([bridge_y, ny, ny + 0.01, ny + 0.05, bridge_y - 0.02])
        pe = np.array([0.02, 1.0, 0.3, 0.15, 0.05]) * p.nose_depth
        nx, nz = side * 0.8 * g.cos + 0.6 * g.sin, -side * 0.8 * g.sin + 0.6 * g.cos  # the face's normal, posed
        lit = 0.72 + 0.4 * max(0.0, nx * lx_ + nz * lz_)
        faces.append((nz, (px, py, pe), _rgba(scale_colour(p.skin, lit))))
    for _, cols, colour in sorted(faces, key=lambda f: f[0]):  # the face turned away first
        sc.add("raised", cols, colour=colour, sketch="hide")
    far = 1.0 if g.sin > 0 else -1.0  # the side whose contour shows is the one turned away
    if abs(g.sin) > 0.1:
        sc.add("raised", (np.array([p.cx + 0.012 * far, p.cx + 0.012 * far, p.cx + far * p.nose_width * 0.6]),
                          np.array([bridge_y - 0.02, ny + 0.01, ny + 0.03]), np.array([0.1, 0.95, 0.3]) * p.nose_depth),
               kind="line", colour=_rgba(scale_colour(p.skin, 0.72)), width=INK * 0.8, sketch="line")
    for side in (-1.0, 1.0):
        sc.add("raised", (*ellipse(p.cx + side * p.nose_width * 0.5, ny - 0.012, p.nose_width * 0.32, 0.012, 10),
                          0.35 * p.nose_depth), colour=_rgba(scale_colour(p.skin, 0.42)), sketch="ink")
    sc.add("raised", (p.cx + np.array([-1.0, -0.6, 0.0, 0.6, 1.0]) * p.nose_width,
                      ny + np.array([0.012, -0.016, -0.022, -0.016, 0.012]),
                      np.array([0.25, 0.5, 0.75, 0.5, 0.25]) * p.nose_depth),
           kind="line", colour=_rgba(scale_colour(p.skin, 0.6)), width=INK * 0.9, sketch="line")
    sc.add("raised", (*ellipse(p.cx, ny + 0.012, p.nose_width * 0.3, 0.016, 10), 0.95 * p.nose_depth),
           colour=(255, 255, 255, 60), sketch=None)


def _blush(sc: Scene, p: FaceParams) -> None:
    """Rosy cheeks: translucent ellipses between the nose tip and the mouth, outside the eyes."""
    ny, my = _nose_tip_y(p), _mouth_y(p)
    for side in (-1.0, 1.0):
        sc.add("face", (*ellipse(p.cx + side * (p.eye_spacing + 0.02), (ny + my) / 2 + 0.02, 0.07, 0.045, 16),
                        0.0), colour=(235, 80, 90, p.blush), sketch=None)


def _beard(sc: Scene, p: FaceParams) -> None:
    """The jaw and chin below a line from the ears round the mouth."""
    ny, my = _nose_tip_y(p), _mouth_y(p)
    v_top = p.eye_y / p.head_h - 0.25
    v_side = np.linspace(v_top, -1.0, 12)
    side_x = p.head_w * sc.g.profile(v_side) * 0.995
    inner_x = np.array([0.75 * p.head_w, p.mouth_w + 0.035, p.mouth_w * 0.5, 0.0])
    inner_y = np.array([ny - 0.02, my + 0.03, ny - 0.035, ny - 0.03])
    bx = np.concatenate([-side_x, side_x[::-1], inner_x, -inner_x[::-1]])
    by = np.concatenate([p.cy + p.head_h * v_side, p.cy + p.head_h * v_side[::-1], inner_y, inner_y[::-1]])
    sc.add("face", (p.cx + bx, by, 0.01), colour=_rgba(scale_colour(p.hair_colour, 0.9)))


def _mouth(sc: Scene, p: FaceParams) -> None:
    """Lips, then an opening with teeth or a closed line."""
    my = _mouth_y(p)
    mx = 2 * RAMP[15] - 1
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
        sc.add("face", (x, centre, 0.0), kind="line", colour=_rgba(scale_colour(p.lip_colour, 0.5)), width=INK * 1.1,
               sketch="line")


def _moustache(sc: Scene, p: FaceParams) -> None:
    mx2 = 2 * RAMP[13] - 1
    mid = _nose_tip_y(p) - 0.042 - 0.035 * np.abs(mx2) ** 1.5  # droops towards the corners of the mouth
    half = 0.014 * (1 - 0.6 * mx2 ** 2) + 0.003
    xm = p.cx + (p.mouth_w + 0.025) * mx2
    sc.add("face", (np.concatenate([xm, xm[::-1]]), np.concatenate([mid + half, (mid - half)[::-1]]), 0.01),
           colour=_rgba(scale_colour(p.hair_colour, 0.85)), sketch="ink")


def _glasses(sc: Scene, p: FaceParams) -> None:
    """Lenses in front of the eyes, a bridge, the arms towards the ears."""
    g = sc.g
    lift = 0.08
    frame = _rgba(p.glasses_colour)
    rw, rh = p.eye_w * 1.45, p.eye_w * 1.1
    c28, s28 = UNIT_CIRCLE[28]
    if p.glasses_round:
        gx, gy = rw * c28, rh * s28
    else:
        gx, gy = rw * np.sign(c28) * np.abs(c28) ** 0.3, rh * 0.9 * np.sign(s28) * np.abs(s28) ** 0.3
    gx, gy = np.append(gx, gx[0]), np.append(gy, gy[0])
    for side in (-1.0, 1.0):
        ex, ey = p.cx + side * p.eye_spacing, p.cy + p.eye_y - 0.005
        sc.add("face", (ex + gx, ey + gy, lift), colour=(200, 225, 235, 50), sketch=None)
        sc.add("face", (ex + gx, ey + gy, lift), kind="line", colour=frame, width=INK * 1.6, sketch="line")
        t_out = g.longitude1(ex + side * rw, ey)
        sc.add("angles", (t_out + (side * 1.9 - t_out) * RAMP[8], (ey + rh * 0.3 - p.cy) / p.head_h, lift, 0.0),
               kind="line", colour=frame, width=INK * 1.3, sketch="line")
    sc.add("face", (p.cx + np.array([-1, -0.5, 0, 0.5, 1]) * (p.eye_spacing - rw),
                    p.cy + p.eye_y + 0.01 + np.array([0, 0.012, 0.016, 0.012, 0]), lift),
           kind="line", colour=frame, width=INK * 1.4, sketch="line")


def _beanie(sc: Scene, p: FaceParams) -> None:
    """A knitted cap over the hair with a turned-up band and a bobble on top."""
    v_band = p.hairline - 0.12 if p.hair_style != "fringe" else p.hairline + 0.05
    lift = max(p.hair_volume, 0.05) + 0.06
    cap(sc, lambda t: np.full_like(t, v_band), lift, _rgba(p.hat_colour))
    band(sc, v_band, v_band + 0.18, lift + 0.02, _rgba(p.hat_band_colour))
    sc.add("image", ellipse(p.cx, p.cy + (1 + lift) * p.head_h, 0.07, 0.06, 16), colour=_rgba(p.hat_band_colour))


def _brimmed_hat(sc: Scene, p: FaceParams) -> None:
    """A flat brim (an ellipse in the image), a crown with a band, and the front half of the brim over it."""
    g = sc.g
    v_band = max(p.hairline, 0.45)
    lift = max(p.hair_volume, 0.05) + 0.05
    brim_y = p.cy + (1 + lift) * p.head_h * v_band
    cw = (1 + lift) * g.A * g.profile1(v_band)
    bx, by = ellipse(p.cx, brim_y, cw + 0.2, 0.06, 32)
    sc.add("image", (bx, by), colour=_rgba(scale_colour(p.hat_colour, 0.8)), shade=False)
    crown_h = p.head_h * 0.42
    arc = np.pi * RAMP[12]
    cxs = np.concatenate([[p.cx - cw * 0.95], p.cx - cw * 0.95 * 0.9 * np.cos(arc), [p.cx + cw * 0.95]])
    cys = np.concatenate([[brim_y], brim_y + crown_h + 0.04 * np.sin(arc) - 0.02 * (np.sin(arc) > 0.5), [brim_y]])
    sc.add("image", (cxs, cys), colour=_rgba(p.hat_colour), shade=False)
    sc.add("image", (np.concatenate([cxs[1:-1], cxs[-2:0:-1]]),
                     np.concatenate([np.full(12, brim_y), np.full(12, brim_y + 0.06)])),
           colour=_rgba(p.hat_band_colour), shade=False)
    front = by <= brim_y
    sc.add("image", (bx[front], by[front]), colour=_rgba(scale_colour(p.hat_colour, 0.9)), shade=False)
