"""Generators of the reference pix2pix/CycleGAN code, module for module (so their state dicts load unchanged)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from nets.norm import get_norm_layer, uses_bias

DROPOUT_P = 0.5  # the reference's dropout rate (U-Net: in the ngf*8 middle levels; ResNet: inside every block)
PADDINGS = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d, "zero": None}


def check_input(x: torch.Tensor, channels: int, multiple: int, name: str) -> None:
    """An image batch (N, channels, H, W) with H, W divisible by `multiple`, or a ValueError saying what came."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{name}: expected an image batch (N, {channels}, H, W), got {tuple(x.shape)}")
    if x.shape[2] % multiple or x.shape[3] % multiple:
        raise ValueError(f"{name}: expected an image batch (N, {channels}, H, W) with H, W divisible by {multiple}, "
                         f"got {tuple(x.shape)}")


class UnetSkipConnectionBlock(nn.Module):
    """One level of the U-Net: down(x) -> submodule -> up, concatenated with its input (except the outermost).

    As in the reference, the LeakyReLU that opens a non-outermost block runs in place, so the skip branch carries
    LeakyReLU(x); keeping that makes outputs identical to the reference's.
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: Optional[int] = None,
                 submodule: Optional[nn.Module] = None, outermost: bool = False, innermost: bool = False,
                 norm: str = "batch", use_dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        norm_layer, bias = get_norm_layer(norm), uses_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, uprelu, upconv, norm_layer(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, norm_layer(inner_nc), submodule, uprelu, upconv, norm_layer(outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(DROPOUT_P))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net with `num_downs` stride-2 levels (7 = unet_128, 8 = unet_256): 1x1 bottleneck at 2**num_downs px."""

    def __init__(self, input_nc: int, output_nc: int, num_downs: int, ngf: int = 64, norm: str = "batch",
                 use_dropout: bool = False):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"UnetGenerator: num_downs must be >= 5 (the reference's fixed outer levels), "
                             f"got {num_downs}")
        self.input_nc, self.output_nc, self.num_downs = input_nc, output_nc, num_downs
        self.ngf, self.norm, self.use_dropout = ngf, norm, use_dropout
        self.size_multiple = 2 ** num_downs
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True,
                                             norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_nc, self.size_multiple, "UnetGenerator")
        return self.model(x)


class ResnetBlock(nn.Module):
    """x + conv-norm-relu-(dropout)-conv-norm(x), with reflection, replication or zero padding."""

    def __init__(self, dim: int, padding_type: str, norm: str, use_dropout: bool, use_bias: bool):
        super().__init__()
        norm_layer = get_norm_layer(norm)
        if padding_type not in PADDINGS:
            raise ValueError(f"padding_type: expected one of {list(PADDINGS)}, got {padding_type!r}")
        pad = PADDINGS[padding_type]

        def conv() -> list:
            return ([pad(1)] if pad else []) + [nn.Conv2d(dim, dim, 3, padding=0 if pad else 1, bias=use_bias)]

        layers = conv() + [norm_layer(dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(DROPOUT_P))
        layers += conv() + [norm_layer(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Johnson et al.'s generator as in CycleGAN: 7x7 conv, 2 stride-2 downs, `n_blocks` residual blocks, 2 ups."""

    n_downsampling = 2

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 64, norm: str = "batch", use_dropout: bool = False,
                 n_blocks: int = 6, padding_type: str = "reflect"):
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"ResnetGenerator: n_blocks must be >= 0, got {n_blocks}")
        if padding_type not in PADDINGS:
            raise ValueError(f"padding_type: expected one of {list(PADDINGS)}, got {padding_type!r}")
        self.input_nc, self.output_nc, self.ngf, self.norm = input_nc, output_nc, ngf, norm
        self.use_dropout, self.n_blocks, self.padding_type = use_dropout, n_blocks, padding_type
        self.size_multiple = 2 ** self.n_downsampling
        norm_layer, bias = get_norm_layer(norm), uses_bias(norm)
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, padding=0, bias=bias), norm_layer(ngf),
                  nn.ReLU(True)]
        for i in range(self.n_downsampling):
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, c * 2, 3, stride=2, padding=1, bias=bias), norm_layer(c * 2), nn.ReLU(True)]
        c = ngf * 2 ** self.n_downsampling
        layers += [ResnetBlock(c, padding_type, norm, use_dropout, bias) for _ in range(n_blocks)]
        for i in range(self.n_downsampling):
            c = ngf * 2 ** (self.n_downsampling - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       norm_layer(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_nc, self.size_multiple, "ResnetGenerator")
        return self.model(x)
