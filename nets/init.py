"""The reference initialisation: N(0, 0.02) convs (or xavier/kaiming/orthogonal), BatchNorm weights N(1, 0.02)."""
from __future__ import annotations

from torch import nn
from torch.nn import init
from safeio.errors import ConfigError

INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    if init_type not in INIT_TYPES:
        raise ConfigError(f"init_type: expected one of {list(INIT_TYPES)}, got '{init_type}'", key="init_type")

    def init_module(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if init_type == "normal":
                init.normal_(m.weight, 0.0, init_gain)
            elif init_type == "xavier":
                init.xavier_normal_(m.weight, gain=init_gain)
            elif init_type == "kaiming":
                init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                init.orthogonal_(m.weight, gain=init_gain)
            if m.bias is not None:
                init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            init.normal_(m.weight, 1.0, init_gain)
            init.zeros_(m.bias)

    net.apply(init_module)
    return net
