"""The one registry of methods: name -> (config dataclass, LightningModule). Tests iterate it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Type

from translate.methods.cyclegan import CycleGAN, CycleGANConfig
from translate.methods.pix2pix import Pix2Pix, Pix2PixConfig
from translate.methods.psp import PSP, PSPConfig
from translate.methods.stylegan2 import StyleGAN2, StyleGAN2Config


@dataclass(frozen=True)
class Method:
    config_class: type
    module_class: Type


METHODS = {
    "pix2pix": Method(Pix2PixConfig, Pix2Pix),
    "cyclegan": Method(CycleGANConfig, CycleGAN),
    "stylegan2": Method(StyleGAN2Config, StyleGAN2),  # trains a prior: exports G_ema, not a translator
    "psp": Method(PSPConfig, PSP),  # an encoder into a frozen StyleGAN2 prior
}
