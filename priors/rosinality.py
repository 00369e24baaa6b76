"""rosinality/stylegan2-pytorch generators (and the `decoder.*` of pSp checkpoints) -> our NVIDIA-layout Generator.

An explicit key map; every source key is used exactly once and every target key is produced, or the import fails
listing what did not fit. Correspondences (both implement the same network):
  style.{i+1}.{weight,bias}           -> mapping.fc{i}.{weight,bias}      (same equalized-lr scaling)
  input.input (1, C, 4, 4)            -> synthesis.b4.const (C, 4, 4)
  <conv>.conv.weight (1, O, I, k, k)  -> <layer>.weight (O, I, k, k)     (demodulated: the scale cancels)
  <conv>.conv.modulation.*            -> <layer>.affine.*
  <conv>.noise.weight (1,)            -> <layer>.noise_strength ()
  <conv>.activate.bias                -> <layer>.bias
  noises.noise_{j} (1, 1, r, r)       -> <j-th layer>.noise_const (r, r)
  to_rgb*.conv.*, to_rgb*.bias        -> <block>.torgb.* (bias (1, 3, 1, 1) -> (3,))
  *.blur.kernel, *.upsample.kernel    -> checked equal to [1, 3, 3, 1] x factor^2 (our filters are rebuilt)
  latent_avg                          -> mapping.w_avg
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from priors.ops import setup_filter


class RosinalityError(ValueError):
    pass


def _channels_config(channels: Dict[int, int]) -> Tuple[int, int]:
    """(channel_base, channel_max) with min(channel_base // res, channel_max) == channels[res] for every res."""
    cmax = max(channels.values())
    below = {r: c for r, c in channels.items() if c < cmax}
    base = min(below[r] * r for r in below) if below else cmax * max(channels)
    if any(min(base // r, cmax) != c for r, c in channels.items()):
        raise RosinalityError(f"channel counts per resolution {channels} cannot be expressed as "
                              "min(channel_base // res, channel_max)")
    return base, cmax


def rosinality_to_nvlabs(sd: Mapping[str, torch.Tensor], latent_avg: Optional[torch.Tensor] = None,
                         source: str = "rosinality generator") -> Tuple[Dict[str, Any], "OrderedDict[str, torch.Tensor]"]:
    """-> (Generator init kwargs, state dict in our layout)."""
    sd = dict(sd)
    used = set()

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise RosinalityError(f"{source}: missing key '{key}'")
        used.add(key)
        return sd[key]

    n_mlp = len({int(m.group(1)) for k in sd if (m := re.match(r"style\.(\d+)\.weight$", k))})
    n_up = len({int(m.group(1)) for k in sd if (m := re.match(r"to_rgbs\.(\d+)\.conv\.weight$", k))})
    if n_mlp == 0 or "input.input" not in sd:
        raise RosinalityError(f"{source}: not a rosinality StyleGAN2 generator (first keys: {list(sd)[:5]})")
    resolution = 4 * 2 ** n_up
    w_dim = sd["style.1.weight"].shape[1]
    img_channels = sd["to_rgb1.conv.weight"].shape[1]
    channels = {4: sd["input.input"].shape[1]}
    for i in range(n_up):
        channels[8 * 2 ** i] = sd[f"convs.{2 * i}.conv.weight"].shape[1]
    base, cmax = _channels_config(channels)
    kwargs = {"z_dim": w_dim, "c_dim": 0, "w_dim": w_dim, "img_resolution": resolution,
              "img_channels": img_channels, "mapping_kwargs": {"num_layers": n_mlp},
              "synthesis_kwargs": {"channel_base": base, "channel_max": cmax}}

    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"] = take(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.bias"] = take(f"style.{i + 1}.bias")
    if latent_avg is not None:
        out["mapping.w_avg"] = latent_avg.reshape(-1)[:w_dim] if latent_avg.ndim == 1 else latent_avg[0]
    out["synthesis.b4.const"] = take("input.input")[0]

    reference_filter = setup_filter([1, 3, 3, 1]) * 4  # rosinality stores the kernel with the gain factor^2

    def conv(src: str, dst: str, noise_idx: int) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.noise_strength"] = take(f"{src}.noise.weight").reshape([])
        out[f"{dst}.bias"] = take(f"{src}.activate.bias")
        out[f"{dst}.noise_const"] = take(f"noises.noise_{noise_idx}")[0, 0]
        if f"{src}.conv.blur.kernel" in sd:
            _check_kernel(take(f"{src}.conv.blur.kernel"), reference_filter, f"{src}.conv.blur.kernel")

    def torgb(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = take(f"{src}.bias").reshape(-1)
        if f"{src}.upsample.kernel" in sd:
            _check_kernel(take(f"{src}.upsample.kernel"), reference_filter, f"{src}.upsample.kernel")

    conv("conv1", "synthesis.b4.conv1", 0)
    torgb("to_rgb1", "synthesis.b4.torgb")
    for i in range(n_up):
        res = 8 * 2 ** i
        conv(f"convs.{2 * i}", f"synthesis.b{res}.conv0", 2 * i + 1)
        conv(f"convs.{2 * i + 1}", f"synthesis.b{res}.conv1", 2 * i + 2)
        torgb(f"to_rgbs.{i}", f"synthesis.b{res}.torgb")
    leftover = sorted(set(sd) - used)
    if leftover:
        raise RosinalityError(f"{source}: keys not used ({len(leftover)}): {', '.join(leftover[:8])}")
    return kwargs, out


def _check_kernel(k: torch.Tensor, ref: torch.Tensor, name: str) -> None:
    if k.shape != ref.shape or not torch.allclose(k.float(), ref, atol=1e-6):
        raise RosinalityError(f"{name}: only the [1, 3, 3, 1] blur kernel is supported, got {k.tolist()}")
