"""Toy faces: a procedural, seeded, download-free face domain (numpy + PIL only).

Every sample is a pure function of (seed, split, index). A face is a small 3-D model: the head is an ellipsoid with
a parametric jaw, the facial features are drawn on its surface, the nose sticks out of it, ears, hair volume, hat
and glasses sit around it. Turning the head (yaw, about the vertical axis) is an exact rotation of that model
followed by an orthographic projection, so eyes, nose and mouth slide sideways with foreshortening, the far ear
disappears behind the head and features past the far limb fold onto the silhouette. `render_face` paints the model
with a Lambert shading of the head and anti-aliases by drawing at 2x or 4x and box-filtering down;
`render_sketch` draws the same geometry as black lines on white (painter's order, so hidden lines stay hidden).

Used for a small StyleGAN2 prior and for pSp demos: super-resolution (degrade `image`), sketch-to-face
(`sketch` -> `image`) and frontalization (`image` -> `frontal`); the `toyfaces` data kind is
`datamodules.toyfaces_data`.

Coordinates: the image spans [-1, 1] in x (right) and y (up); z points at the viewer. A positive yaw turns the
face towards the image's right.

Where the parts live (each module imports only the ones above it):
    params.py    FaceParams, the distribution `sample_params` draws from, RGB colour helpers
    geometry.py  the posed head (`Head`), the draw list (`Scene`, `Shape`), surface regions (`cap`, `band`)
    features.py  `face_scene`: body, ears, head, hair, eyes, nose, mouth, facial hair, glasses, hats as shapes
    painting.py  `render_face`, `render_sketch`, `render_frontal`, `render_all`: shapes to pixels
    samples.py   `face_params(seed, split, index)`, `ToyFaces`, `ToyFacesTensors`, `write_toyfaces`
    tools.py     `preview`, `yaw_sweep`, `benchmark`; `python -m datamodules.toyfaces` writes the preview grid
"""
from datamodules.toyfaces.painting import MAX_SIZE, MIN_SIZE, render_all, render_face, render_frontal, render_sketch
from datamodules.toyfaces.params import HAIR_STYLES, HATS, FaceParams, sample_params
from datamodules.toyfaces.samples import SPLITS, ToyFaces, ToyFacesTensors, face_params, write_toyfaces
from datamodules.toyfaces.tools import benchmark, preview, yaw_sweep

__all__ = ["FaceParams", "HAIR_STYLES", "HATS", "MAX_SIZE", "MIN_SIZE", "SPLITS", "ToyFaces", "ToyFacesTensors",
           "benchmark", "face_params", "preview", "render_all", "render_face", "render_frontal", "render_sketch",
           "sample_params", "write_toyfaces", "yaw_sweep"]
