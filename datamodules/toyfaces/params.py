"""What a toy face is made of: the `FaceParams` record, the distribution it is drawn from (`sample_params`, with
the probabilities and palettes as named constants) and the small RGB colour arithmetic the drawing code shares.
Nothing here draws; a face's parameters are all that the renderers read.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Tuple

import numpy as np

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


def jitter_colour(rng: np.random.Generator, colour: RGB, amount: float) -> RGB:
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in colour)


def from_hsv(h: float, s: float, v: float) -> RGB:
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def scale_colour(colour: RGB, k: float) -> RGB:
    """Each channel times k (k < 1 darkens), clipped to 0..255."""
    return tuple(min(max(int(c * k), 0), 255) for c in colour)


def mix_colours(a: RGB, b: RGB, t: float) -> RGB:
    """The colour a fraction t of the way from a to b."""
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def sample_params(rng: np.random.Generator, max_yaw: float = 30.0) -> FaceParams:
    """Draw one face from the toy-face distribution; the yaw is uniform in [-max_yaw, max_yaw] degrees.

    The order of the draws is part of the data: changing it changes every face of every seed."""
    u = rng.uniform
    head_w = u(0.36, 0.44)
    head_h = head_w * u(1.22, 1.42)
    tone = u(0, len(SKIN_TONES) - 1)
    lo = int(tone)
    skin = jitter_colour(rng, mix_colours(SKIN_TONES[lo], SKIN_TONES[min(lo + 1, len(SKIN_TONES) - 1)], tone - lo), 5)
    style = _pick(rng, HAIR_STYLES, HAIR_STYLE_P)
    hair_colour = jitter_colour(rng, _pick(rng, HAIR_COLOURS, HAIR_COLOUR_P), 8)
    if rng.random() < 0.04:  # a rare dyed colour
        hair_colour = from_hsv(u(0, 1), u(0.5, 0.8), u(0.5, 0.9))
    brow_colour = scale_colour(hair_colour, 0.8) if style != "bald" else scale_colour(skin, 0.45)
    if sum(hair_colour) > 540:  # white hair keeps visible (grey) brows
        brow_colour = (130, 126, 122)
    eye_w = u(0.068, 0.09)
    curve = u(-0.015, 0.05)
    lip = mix_colours(scale_colour(skin, 0.82), (176, 70, 80), u(0.25, 0.6))
    hue = u(0, 1)
    bg_a = from_hsv(hue, u(0.1, 0.5), u(0.35, 0.95))
    bg_b = from_hsv(hue + u(-0.15, 0.15), u(0.1, 0.5), u(0.35, 0.95))
    return FaceParams(
        head_w=head_w, head_h=head_h, head_d=u(1.0, 1.2), jaw=u(1.7, 3.0), chin=u(0.0, 0.22),
        cx=u(-0.04, 0.04), cy=u(0.1, 0.17), skin=skin,
        hair_style=style, hair_colour=hair_colour, hair_volume=u(0.03, 0.08) if style != "curly" else u(0.12, 0.2),
        hairline=u(0.55, 0.68) if style != "fringe" else u(0.3, 0.4), hair_sweep=u(-0.12, 0.12),
        hair_length=u(1.3, 2.0),
        eye_w=eye_w, eye_aspect=u(0.45, 0.62), eye_spacing=head_w * u(0.38, 0.46), eye_y=head_h * u(0.0, 0.1),
        eye_tilt=u(-0.12, 0.15), gaze=u(-0.15, 0.15), iris_colour=jitter_colour(rng, _pick(rng, IRIS_COLOURS), 8),
        brow_thickness=u(0.016, 0.034), brow_angle=u(-14, 16), brow_gap=u(0.07, 0.1), brow_colour=brow_colour,
        nose_length=head_h * u(0.3, 0.4), nose_width=u(0.045, 0.07), nose_depth=head_w * u(0.16, 0.3),
        mouth_w=u(0.085, 0.135), mouth_gap=head_h * u(0.16, 0.22), mouth_curve=curve,
        mouth_open=bool(curve > 0.02 and rng.random() < OPEN_MOUTH_P), lip_thickness=u(0.014, 0.026),
        lip_colour=lip, blush=int(rng.integers(25, 60)) if rng.random() < BLUSH_P else 0,
        beard=bool(rng.random() < BEARD_P), moustache=bool(rng.random() < MOUSTACHE_P),
        glasses=bool(rng.random() < GLASSES_P), glasses_round=bool(rng.random() < 0.5),
        glasses_colour=_pick(rng, FRAME_COLOURS), hat=_pick(rng, HATS, HAT_P),
        hat_colour=from_hsv(u(0, 1), u(0.3, 0.8), u(0.3, 0.85)),
        hat_band_colour=from_hsv(u(0, 1), u(0.2, 0.7), u(0.2, 0.9)),
        earrings=bool(rng.random() < EARRINGS_P), earring_colour=_pick(rng, ((222, 184, 70), (200, 200, 210))),
        clothes_colour=from_hsv(u(0, 1), u(0.15, 0.8), u(0.2, 0.85)),
        bg_colour_a=bg_a, bg_colour_b=bg_b, bg_angle=u(0, 360),
        light_azimuth=u(-55, 55), light_elevation=u(15, 45),
        yaw=u(-max_yaw, max_yaw),
    )
