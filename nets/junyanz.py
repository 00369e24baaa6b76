"""Strict import of generators/discriminators saved by the reference pix2pix/CycleGAN code (`latest_net_G.pth`).

Explicit rules, no guessing by order: the architecture is read off the key layout and shapes, every key must be
used and every shape must match, and files are read with `weights_only=True` (no code is ever unpickled).
Our nets have the reference's module structure, so the key map is the identity once `clean_state_dict` has undone
what DataParallel and old PyTorch versions added.
"""
from __future__ import annotations

import inspect
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Tuple

import torch
from torch import nn

from nets import build_discriminator, build_generator
from safeio import LoadError, strict_load, torch_load_failure

DATA_PARALLEL_PREFIX = "module."
RUNNING_STAT_KEYS = ("running_mean", "running_var", "num_batches_tracked")


class WeightsImportError(LoadError):
    """Weights that do not fit the architecture (lists missing, unexpected and mis-shaped keys)."""


def load_state_dict_file(path: str | Path) -> "OrderedDict[str, torch.Tensor]":
    """A state dict (name -> tensor) read with `weights_only=True`; pickles that need code are refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsImportError(f"cannot read {path} as a state dict with torch.load(weights_only=True): "
                                 f"{torch_load_failure(e)}") from e
    if isinstance(sd, Mapping) and isinstance(sd.get("state_dict"), Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in sd.items()):
        raise WeightsImportError(f"{path}: expected a state dict (name -> tensor), got {type(sd).__name__}")
    return OrderedDict(sd)


def clean_state_dict(sd: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Undo what DataParallel and old PyTorch versions put into reference state dicts.

    - strip the DataParallel `module.` prefix;
    - drop `running_mean` / `running_var` / `num_batches_tracked` of InstanceNorm layers (PyTorch < 0.4 saved
      them; the reference's `__patch_instance_norm_state_dict` drops them too). An InstanceNorm here has no affine
      weight, which is how it is told apart from a BatchNorm;
    - add the `num_batches_tracked` counter that BatchNorm layers saved before PyTorch 0.4.1 lack (as
      `BatchNorm2d._load_from_state_dict` does for such files).
    """
    out = OrderedDict((k[len(DATA_PARALLEL_PREFIX):] if k.startswith(DATA_PARALLEL_PREFIX) else k, v)
                      for k, v in sd.items())
    for key in list(out):
        layer, _, leaf = key.rpartition(".")
        if leaf in RUNNING_STAT_KEYS and f"{layer}.weight" not in out:
            del out[key]
    for key in list(out):
        layer, _, leaf = key.rpartition(".")
        if leaf == "running_mean" and f"{layer}.num_batches_tracked" not in out:
            out[f"{layer}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return out


# ---- architecture inference ------------------------------------------------------------------------------------
def _norm_of(sd: Mapping[str, torch.Tensor], norm_key: str, conv_bias_key: str) -> str:
    """batch: the first norm layer has an affine weight; instance: no norm weights, but the convs before norms
    have a bias (the reference's `use_bias`); none: neither."""
    if norm_key in sd:
        return "batch"
    return "instance" if conv_bias_key in sd else "none"


def _conv_indices(sd: Mapping[str, torch.Tensor], prefix: str) -> list:
    """Indices i of the 4-d weights `{prefix}.{i}.weight` of a Sequential, in order."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.weight$")
    return sorted(int(m.group(1)) for k, v in sd.items() if (m := pattern.match(k)) and v.dim() == 4)


def _resnet_block_has_dropout(sd: Mapping[str, torch.Tensor], prefix: str) -> bool:
    """A ResnetBlock's two convs sit 4 apart in its Sequential (pad, conv, norm, relu, pad, conv, norm) or, with
    the Dropout the reference puts after the relu, 5 apart."""
    convs = _conv_indices(sd, prefix)
    return len(convs) == 2 and convs[1] - convs[0] == 5


def _need(sd: Mapping[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    if key not in sd:
        raise WeightsImportError(f"incomplete {what} state dict: expected key {key!r}")
    return sd[key]


def infer_generator_spec(sd: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """`build_generator` arguments (U-Net depth or ResNet block count, ngf, channels, norm) read off a cleaned
    state dict.

    Dropout has no weights: a U-Net's state dict is the same with or without it, so its `use_dropout` is False
    unless overridden; in a ResNet generator the Dropout shifts the second conv of each block, so it is read off.
    """
    if "model.model.0.weight" in sd:  # U-Net: UnetSkipConnectionBlocks nested at `.model.3` (their submodule)
        first = sd["model.model.0.weight"]  # outermost downconv (ngf, input_nc, 4, 4)
        depth, prefix = 2, "model.model.1"
        while any(k.startswith(f"{prefix}.model.3.model.") for k in sd):
            depth, prefix = depth + 1, f"{prefix}.model.3"
        last = _need(sd, "model.model.3.weight", "U-Net")  # outermost upconv (2 * ngf, output_nc, 4, 4)
        return {"name": "unet", "num_downs": depth, "input_nc": first.shape[1], "output_nc": last.shape[1],
                "ngf": first.shape[0], "use_dropout": False,
                "norm": _norm_of(sd, "model.model.1.model.2.weight", "model.model.1.model.1.bias")}
    first = sd.get("model.1.weight")
    if first is not None and first.dim() == 4 and first.shape[-1] == 7:  # ResNet: ReflectionPad2d(3), 7x7 conv
        blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.conv_block\.", k))})
        last = sd[f"model.{_conv_indices(sd, 'model')[-1]}.weight"]  # final 7x7 conv (output_nc, ngf, 7, 7)
        return {"name": "resnet", "n_blocks": len(blocks), "input_nc": first.shape[1], "output_nc": last.shape[0],
                "ngf": first.shape[0], "norm": _norm_of(sd, "model.2.weight", "model.1.bias"),
                "use_dropout": bool(blocks) and _resnet_block_has_dropout(sd, f"model.{blocks[0]}.conv_block")}
    raise WeightsImportError("not a reference pix2pix/CycleGAN generator: expected U-Net keys (model.model.0.weight) "
                             f"or ResNet keys (model.1.weight, a 7x7 conv); first keys: {list(sd)[:5]}")


def infer_discriminator_spec(sd: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """`build_discriminator` arguments (PatchGAN depth or pixel, ndf, input channels, norm) from a cleaned state
    dict."""
    if "net.0.weight" in sd:  # PixelDiscriminator: 1x1 convs in `net`
        w = sd["net.0.weight"]
        return {"name": "pixel", "input_nc": w.shape[1], "ndf": w.shape[0],
                "norm": _norm_of(sd, "net.3.weight", "net.2.bias")}
    w = sd.get("model.0.weight")
    if w is not None and w.dim() == 4 and w.shape[-1] == 4:  # NLayerDiscriminator: 4x4 convs in `model`
        n_layers = len(_conv_indices(sd, "model")) - 2  # the first conv and the 1-channel output conv are extra
        return {"name": "basic" if n_layers == 3 else "n_layers", "input_nc": w.shape[1], "ndf": w.shape[0],
                "n_layers": n_layers, "norm": _norm_of(sd, "model.3.weight", "model.2.bias")}
    raise WeightsImportError("not a reference pix2pix/CycleGAN discriminator: expected PatchGAN keys (model.0.weight, "
                             f"a 4x4 conv) or PixelGAN keys (net.0.weight); first keys: {list(sd)[:5]}")


def _import(path_or_sd: str | Path | Mapping[str, torch.Tensor], infer: Callable, build: Callable,
            overrides: Dict[str, Any]) -> Tuple[nn.Module, Dict[str, Any]]:
    allowed = set(inspect.signature(build).parameters) - {"init_type", "init_gain"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise TypeError(f"{build.__name__}: unknown overrides {unknown}; expected some of {sorted(allowed)}")
    if isinstance(path_or_sd, Mapping):
        source, sd = "state dict", path_or_sd
    else:
        source, sd = str(path_or_sd), load_state_dict_file(path_or_sd)
    sd = clean_state_dict(sd)
    spec = {**infer(sd), **overrides}
    return strict_load(build(**spec), sd, source).eval(), spec


def import_generator(path_or_sd: str | Path | Mapping[str, torch.Tensor],
                     **overrides: Any) -> Tuple[nn.Module, Dict[str, Any]]:
    """The generator a reference checkpoint (file or state dict) describes, loaded strictly, in eval mode.

    Returns (net, spec) with spec the `build_generator` arguments used: those inferred from the weights, updated
    by `overrides` (e.g. `use_dropout=True`, or `name="unet_256"`).
    """
    return _import(path_or_sd, infer_generator_spec, build_generator, overrides)


def import_discriminator(path_or_sd: str | Path | Mapping[str, torch.Tensor],
                         **overrides: Any) -> Tuple[nn.Module, Dict[str, Any]]:
    """The discriminator a reference checkpoint describes, loaded strictly, in eval mode; returns (net, spec)."""
    return _import(path_or_sd, infer_discriminator_spec, build_discriminator, overrides)
