"""The `images` data kind: one folder of images, nothing paired (a StyleGAN2 prior trains on these).

root/ (or root/<split>/ when root/train exists), read like the `single` kind; both A and B are the preprocessed
image, so a method that reads only B (translate.methods.stylegan2) pays for no degradation.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

from datamodules.io import to_channels
from datamodules.paired import DegradedDataset


class ImageFolderDataset(DegradedDataset):
    holds_out = False  # a prior trains on every image and scores none (its validation logs samples)

    def make_source(self, index: int) -> Callable[[np.ndarray], np.ndarray]:
        nc = self.cfg.input_nc

        def same(target: np.ndarray) -> np.ndarray:
            if target.shape[2] == nc:
                return target
            return to_channels(Image.fromarray(target if target.shape[2] == 3 else target[:, :, 0]), nc)

        return same
