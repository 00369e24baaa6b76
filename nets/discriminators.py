"""Discriminators of the reference pix2pix/CycleGAN code: PatchGAN (70x70 with 3 layers) and the 1x1 PixelGAN."""
from __future__ import annotations

import torch
from torch import nn

from nets.generators import check_input
from nets.norm import get_norm_layer, uses_bias


class NLayerDiscriminator(nn.Module):
    """PatchGAN: `n_layers` stride-2 4x4 convs, one stride-1, then a 1-channel map of per-patch logits."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"NLayerDiscriminator: n_layers must be >= 1, got {n_layers}")
        self.input_nc = input_nc
        norm_layer, bias = get_norm_layer(norm), uses_bias(norm)
        layers = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                       norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_nc, 1, "NLayerDiscriminator")
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PixelGAN: classifies every pixel."""

    def __init__(self, input_nc: int, ndf: int = 64, norm: str = "batch"):
        super().__init__()
        self.input_nc = input_nc
        norm_layer, bias = get_norm_layer(norm), uses_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias), norm_layer(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_nc, 1, "PixelDiscriminator")
        return self.net(x)
