"""Strict loading of foreign weights: every key present, none left over, every shape equal, or one clear error."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from safeio.errors import LoadError


def check_fits(net: nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> None:
    """strict_load's checks without loading: `net` may live on the meta device (shapes only). Raises LoadError."""
    own = net.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    shapes = sorted(f"{k}: expected {tuple(own[k].shape)}, got {tuple(sd[k].shape)}"
                    for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or shapes:
        parts = [f"{name} ({len(v)}): {', '.join(v[:8])}{' ...' if len(v) > 8 else ''}"
                 for name, v in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if v]
        raise LoadError(f"{source} does not fit {type(net).__name__}: " + "; ".join(parts))


def strict_load(net: nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Load `sd` into `net` (cast to its dtypes) if it fits exactly, else raise one LoadError naming `source`."""
    check_fits(net, sd, source)
    own = net.state_dict()
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)
    return net
