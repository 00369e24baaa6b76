"""The one registry of methods: name -> Method subclass (translate.methods.interface), whose `config_class` is the
schema of the run config's `model:` section. Tests iterate it."""
from __future__ import annotations

from typing import Dict, Type

from translate.methods.cyclegan import CycleGAN
from translate.methods.interface import Method
from translate.methods.pix2pix import Pix2Pix
from translate.methods.psp import PSP
from translate.methods.stylegan2 import StyleGAN2

METHODS: Dict[str, Type[Method]] = {
    "pix2pix": Pix2Pix,
    "cyclegan": CycleGAN,
    "stylegan2": StyleGAN2,  # trains a prior: exports G_ema, not a translator
    "psp": PSP,  # an encoder into a frozen StyleGAN2 prior
}
