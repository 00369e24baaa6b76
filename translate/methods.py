"""The one registry of methods: name -> (config dataclass, LightningModule). Tests iterate it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Type

from translate.pix2pix import Pix2Pix, Pix2PixConfig


@dataclass(frozen=True)
class Method:
    config_class: type
    module_class: Type


METHODS = {
    "pix2pix": Method(Pix2PixConfig, Pix2Pix),
}
