"""The method interface: all that the runner, export, the CLI and the registry know of a method.

A method is a LightningModule subclass of `Method` that declares, as class attributes,
- `config_class`: the dataclass of the run config's `model:` section (each field with its reference default);
- `exports`: what `cli.py export` makes of it, `TRANSLATOR` (a bundle of the net `export_spec()` returns, one per
  direction named in `export_directions` when it holds several) or `PRIOR` (a StyleGAN2 prior folder written by
  `export_to()`);
- `init_only_keys`: `model.*` keys naming files that only initialise weights (a checkpoint holds what was trained from
  them, so they are not read again when a trained run is loaded);
- `frozen_modules`: submodules that stay in eval mode whatever Lightning toggles (a prior, an EMA copy; a property
  where it depends on the config).

It is built from the typed config, `Method.from_config(model, data)`: the constructor takes the `config_class`
instance itself (`self.cfg`) and the data's channels and direction; its hyperparameters are stored in checkpoints as
plain dicts. A value the constructor or a net builder rejects is a `ConfigError` naming its key; a net builder names
its own argument ("netG"), which `from_config` reports as the run config's "model.netG".
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, ClassVar, Dict, Optional, Tuple

import pytorch_lightning as pl
from torch import nn

from datamodules.config import DataConfig
from safeio.errors import ConfigError

TRANSLATOR, PRIOR = "translator", "prior"  # the kinds of artefact `cli.py export` writes


class Method(pl.LightningModule, ABC):
    """Base of every method (see the module docstring for what a method declares)."""

    config_class: ClassVar[type]
    exports: ClassVar[str] = TRANSLATOR
    export_directions: ClassVar[Tuple[str, ...]] = ()  # several translators (CycleGAN: "AtoB", "BtoA"); () = one
    init_only_keys: ClassVar[Tuple[str, ...]] = ()
    frozen_modules: Tuple[str, ...] = ()

    def __init__(self, model: Any, input_nc: int = 3, output_nc: int = 3, direction: str = "AtoB"):
        """model: an instance of `config_class`; input_nc: image channels, or the number of classes of one-hot label
        maps (data.label_nc); output_nc: channels made; direction: which data folder is the source (data.direction)."""
        if not isinstance(model, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(model).__name__}")
        super().__init__()
        self.cfg = model
        self.save_hyperparameters({"model": asdict(model), "input_nc": input_nc, "output_nc": output_nc,
                                   "direction": direction})

    @classmethod
    def from_config(cls, model: Any, data: DataConfig) -> "Method":
        """The method of a run config's `model` section, for the images its `data` section makes."""
        try:
            return cls(model, input_nc=data.label_nc or data.input_nc, output_nc=data.output_nc,
                       direction=data.direction)
        except ConfigError as e:
            if e.key in {f.name for f in fields(model)}:  # checked by a net builder under its own name
                raise e.within("model") from e
            raise

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.frozen_modules:
            self.get_submodule(name).eval()
        return self

    @abstractmethod
    def inference_net(self) -> nn.Module:
        """The net that makes the method's images in evaluation (eval mode, EMA weights where there are some)."""

    def export_spec(self, direction: Optional[str] = None) -> Tuple[nn.Module, Dict[str, Any]]:
        """exports TRANSLATOR: the net to bundle and its metadata (translate.deploy.export.REQUIRED_META)."""
        raise NotImplementedError(f"{type(self).__name__} exports a {self.exports}, not a translator")

    def export_to(self, out: str | Path, overwrite: bool = False) -> Path:
        """exports PRIOR: write the artefact into the folder `out` and return its path."""
        raise NotImplementedError(f"{type(self).__name__} exports a {self.exports}, not a prior")
