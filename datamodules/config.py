"""Configuration of the data modules: one dataclass per component, defaults from the reference implementations."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class DegradationConfig:
    """How the `single` data set makes (degraded source, clean target) pairs from one folder of images."""

    name: str = "downsample"  # downsample | downsample_psp | sketch | grayscale | blur | jpeg | noise | none | flip
    factors: List[int] = field(default_factory=lambda: [4])  # downsample: one factor drawn per sample (2..32)
    resize_back: bool = True  # downsample: upsample the low-res image back to the target size (pSp's SR input)
    blur_sigma: List[float] = field(default_factory=lambda: [0.5, 3.0])  # blur: sigma range (pixels)
    jpeg_quality: List[int] = field(default_factory=lambda: [10, 50])  # jpeg: quality range
    noise_sigma: List[float] = field(default_factory=lambda: [0.02, 0.1])  # noise: std range in [0, 1] units
    sketch_threshold: float = 0.1  # sketch: edge-magnitude threshold for the kornia Canny edges


@dataclass
class SyntheticConfig:
    """The procedural paired set (label map -> rendered scene); generated on the fly from the seed, no download."""

    size: int = 64  # image side in pixels: 32, 64, 128 or 256
    n_train: int = 400  # number of training pairs (synthetic_unpaired: images per side, of disjoint scenes)
    n_val: int = 32  # number of validation pairs (also used as the test split)
    seed: int = 0  # the whole set is a pure function of this seed


@dataclass
class ToyFacesConfig:
    """Procedural toy faces (datamodules.toyfaces), rendered on the fly from the seed; no download."""

    task: str = "faces"  # faces (A = B = face) | sketch (sketch -> face) | frontalize (posed -> frontal) | sr
    size: int = 64  # image side in pixels (16..256)
    n_train: int = 2000  # number of training faces
    n_val: int = 64  # number of validation faces (and of test faces, drawn from their own stream)
    seed: int = 0  # the whole set is a pure function of this seed
    max_yaw: float = 30.0  # head turn drawn in [-max_yaw, max_yaw] degrees


@dataclass
class DataConfig:
    """Which images, how they are paired, and how they are preprocessed (reference pix2pix/CycleGAN options)."""

    kind: str = "synthetic"  # a key of datamodules.DATASETS: aligned | paired | single | synthetic | unaligned | ...
    root: Optional[str] = None  # data root folder (not used by `synthetic`)
    direction: str = "AtoB"  # AtoB | BtoA: which side is the source
    input_nc: int = 3  # channels of the source image (1 = grayscale)
    label_nc: int = 0  # > 0: sources are label maps of class indices, resized nearest, one-hot to label_nc channels
    output_nc: int = 3  # channels of the target image
    preprocess: str = "resize_and_crop"  # resize_and_crop | crop | scale_width | scale_width_and_crop | none
    load_size: int = 286  # resize to this size (reference --load_size)
    crop_size: int = 256  # then random-crop to this size (reference --crop_size)
    flip: bool = True  # random horizontal flip of both images of a pair (reference: not --no_flip)
    color_jitter: float = 0.0  # brightness/contrast/saturation jitter applied to the source image only
    size_multiple: int = 4  # preprocess `none` rounds sizes to a multiple of this (the net's size multiple)
    batch_size: int = 1  # reference pix2pix default
    drop_last: bool = False  # drop each epoch's last partial training batch (pSp and StyleGAN2 do)
    num_workers: int = 2  # loader worker processes (0 = load in the main process)
    serial_batches: bool = False  # unaligned: pair A[i] with B[i] instead of a random B
    max_dataset_size: Optional[int] = None  # use at most this many images per split
    on_bad_image: str = "skip"  # skip (warn and count) | fail: what to do with an unreadable image
    val_split: str = "val"  # folder used for validation (falls back to `test` when missing)
    # paired/single without split folders: this fraction of the images (a fixed seeded choice, at least one) is held
    # out for validation and test, never trained on; 0: validation reads the training images (no best checkpoint)
    val_fraction: float = 0.1
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    toyfaces: ToyFacesConfig = field(default_factory=ToyFacesConfig)
