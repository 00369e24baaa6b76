"""Strict import of generators/discriminators saved by the reference pix2pix/CycleGAN code (`latest_net_G.pth`).

Explicit rules, no guessing by order: the architecture is read off the key layout and shapes, every key must be
used and every shape must match, and files are read with `weights_only=True` (no code is ever unpickled).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

import torch
from torch import nn

from nets import build_discriminator, build_generator
from nets.strict import strict_load


class WeightsImportError(ValueError):
    """Weights that do not fit the architecture (lists missing, unexpected and mis-shaped keys)."""


def load_state_dict_file(path: str | Path) -> "OrderedDict[str, torch.Tensor]":
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsImportError(f"cannot read {path} as a state dict with weights_only=True "
                                 f"(files that need code to unpickle are refused): {str(e).splitlines()[0]}") from e
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsImportError(f"{path}: expected a state dict (name -> tensor), got {type(sd).__name__}")
    return OrderedDict(sd)


def clean_state_dict(sd: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Strip a DataParallel `module.` prefix; drop the running-stat keys that InstanceNorm had before PyTorch 0.4;
    add `num_batches_tracked` to BatchNorm layers saved before PyTorch 0.4.1."""
    out = OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in sd.items())
    for key in list(out):
        layer, _, leaf = key.rpartition(".")
        if leaf in ("running_mean", "running_var", "num_batches_tracked") and f"{layer}.weight" not in out:
            del out[key]  # an (old) InstanceNorm without affine parameters never has running stats
    for key in list(out):
        layer, _, leaf = key.rpartition(".")
        if leaf == "running_mean" and f"{layer}.num_batches_tracked" not in out:
            out[f"{layer}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return out


def _norm_of(sd: Mapping[str, torch.Tensor], norm_key: str, conv_bias_key: str) -> str:
    if norm_key in sd:
        return "batch"
    return "instance" if conv_bias_key in sd else "none"


def infer_generator_spec(sd: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """U-Net depth or ResNet block count, ngf, channels and norm, read off a (cleaned) state dict."""
    if "model.model.0.weight" in sd:  # U-Net: nested UnetSkipConnectionBlocks
        first = sd["model.model.0.weight"]
        depth, prefix = 2, "model.model.1"
        while any(k.startswith(f"{prefix}.model.3.model.") for k in sd):
            depth, prefix = depth + 1, f"{prefix}.model.3"
        return {"name": "unet", "num_downs": depth, "input_nc": first.shape[1], "output_nc": sd["model.model.3.weight"].shape[1],
                "ngf": first.shape[0], "norm": _norm_of(sd, "model.model.1.model.2.weight", "model.model.1.model.1.bias"),
                "use_dropout": False}
    if "model.1.weight" in sd and sd["model.1.weight"].shape[-1] == 7:  # ResNet generator
        first = sd["model.1.weight"]
        blocks = {int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
        convs = sorted(int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.weight$", k)) and sd[k].dim() == 4)
        return {"name": "resnet", "n_blocks": len(blocks), "input_nc": first.shape[1],
                "output_nc": sd[f"model.{convs[-1]}.weight"].shape[0], "ngf": first.shape[0],
                "norm": _norm_of(sd, "model.2.weight", "model.1.bias"), "use_dropout": False}
    raise WeightsImportError("not a reference pix2pix/CycleGAN generator: expected U-Net keys (model.model.0.weight) "
                             f"or ResNet keys (model.1.weight, 7x7); first keys: {list(sd)[:5]}")


def infer_discriminator_spec(sd: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    if "net.0.weight" in sd:
        w = sd["net.0.weight"]
        return {"name": "pixel", "input_nc": w.shape[1], "ndf": w.shape[0],
                "norm": _norm_of(sd, "net.3.weight", "net.2.bias")}
    if "model.0.weight" in sd and sd["model.0.weight"].shape[-1] == 4:
        w = sd["model.0.weight"]
        convs = [k for k in sd if re.match(r"model\.\d+\.weight$", k) and sd[k].dim() == 4]
        n_layers = len(convs) - 2
        return {"name": "n_layers" if n_layers != 3 else "basic", "input_nc": w.shape[1], "ndf": w.shape[0],
                "n_layers": n_layers, "norm": _norm_of(sd, "model.3.weight", "model.2.bias")}
    raise WeightsImportError(f"not a reference discriminator; first keys: {list(sd)[:5]}")


def load_strict(net: nn.Module, sd: Mapping[str, torch.Tensor], source: str = "state dict") -> nn.Module:
    return strict_load(net, sd, source, WeightsImportError)


def _import(path_or_sd, infer, build, overrides: Dict[str, Any]) -> Tuple[nn.Module, Dict]:
    source = "state dict" if isinstance(path_or_sd, Mapping) else str(path_or_sd)
    sd = clean_state_dict(path_or_sd if isinstance(path_or_sd, Mapping) else load_state_dict_file(path_or_sd))
    spec = {**infer(sd), **overrides}
    return load_strict(build(**spec), sd, source).eval(), spec


def import_generator(path_or_sd: str | Path | Mapping[str, torch.Tensor], **overrides: Any) -> Tuple[nn.Module, Dict]:
    """Build the generator a reference checkpoint describes (overrides win) and load it strictly."""
    return _import(path_or_sd, infer_generator_spec, build_generator, overrides)


def import_discriminator(path_or_sd: str | Path | Mapping[str, torch.Tensor], **overrides: Any) -> Tuple[nn.Module, Dict]:
    return _import(path_or_sd, infer_discriminator_spec, build_discriminator, overrides)
