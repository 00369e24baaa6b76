"""translate-kit: image-to-image translation (pix2pix, CycleGAN, pSp) on one CLI.

`translate.load_translator(path)` loads an exported bundle for inference; it needs neither Lightning nor the
config system (the training code lives in the submodules and is imported only when used).
"""
from translate.inference import Translator, load_translator

__all__ = ["Translator", "load_translator"]
