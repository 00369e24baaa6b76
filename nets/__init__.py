"""Networks. One visible dict per kind; tests iterate them."""
from __future__ import annotations

from typing import Any, Dict, Optional

from torch import nn

from nets.discriminators import NLayerDiscriminator, PixelDiscriminator
from nets.generators import ResnetGenerator, UnetGenerator
from nets.init import init_weights
from nets.norm import get_norm_layer, inference_copy


def _unet(input_nc, output_nc, ngf, norm, use_dropout, num_downs, n_blocks, fixed=None):
    depth = fixed or num_downs
    if depth is None:
        raise ValueError("netG 'unet' needs num_downs (the number of stride-2 levels, e.g. 6 for 64 px)")
    if fixed and num_downs not in (None, fixed):
        raise ValueError(f"unet_{2 ** fixed} has num_downs={fixed}, got num_downs={num_downs}")
    return UnetGenerator(input_nc, output_nc, depth, ngf=ngf, norm=norm, use_dropout=use_dropout)


def _resnet(input_nc, output_nc, ngf, norm, use_dropout, num_downs, n_blocks, fixed=None):
    blocks = fixed if fixed is not None else n_blocks
    if blocks is None:
        raise ValueError("netG 'resnet' needs n_blocks")
    if fixed is not None and n_blocks not in (None, fixed):
        raise ValueError(f"resnet_{fixed}blocks has n_blocks={fixed}, got n_blocks={n_blocks}")
    return ResnetGenerator(input_nc, output_nc, ngf=ngf, norm=norm, use_dropout=use_dropout, n_blocks=blocks)


GENERATORS = {
    "unet_128": lambda *a: _unet(*a, fixed=7),
    "unet_256": lambda *a: _unet(*a, fixed=8),
    "unet": _unet,
    "resnet_6blocks": lambda *a: _resnet(*a, fixed=6),
    "resnet_9blocks": lambda *a: _resnet(*a, fixed=9),
    "resnet": _resnet,
}

DISCRIMINATORS = {
    "basic": lambda input_nc, ndf, n_layers, norm: NLayerDiscriminator(input_nc, ndf, n_layers=3, norm=norm),
    "n_layers": lambda input_nc, ndf, n_layers, norm: NLayerDiscriminator(input_nc, ndf, n_layers=n_layers, norm=norm),
    "pixel": lambda input_nc, ndf, n_layers, norm: PixelDiscriminator(input_nc, ndf, norm=norm),
}


def build_generator(name: str, input_nc: int, output_nc: int, ngf: int = 64, norm: str = "batch",
                    use_dropout: bool = False, num_downs: Optional[int] = None, n_blocks: Optional[int] = None,
                    init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    if name not in GENERATORS:
        raise ValueError(f"netG: expected one of {sorted(GENERATORS)}, got '{name}'")
    get_norm_layer(norm)  # validates the name
    net = GENERATORS[name](input_nc, output_nc, ngf, norm, use_dropout, num_downs, n_blocks)
    return init_weights(net, init_type, init_gain)


def build_discriminator(name: str, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch",
                        init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    if name not in DISCRIMINATORS:
        raise ValueError(f"netD: expected one of {sorted(DISCRIMINATORS)}, got '{name}'")
    get_norm_layer(norm)
    return init_weights(DISCRIMINATORS[name](input_nc, ndf, n_layers, norm), init_type, init_gain)


def generator_spec(net: nn.Module) -> Dict[str, Any]:
    """Plain constructor arguments: `build_generator(**generator_spec(net))` rebuilds the architecture."""
    common = {"input_nc": net.input_nc, "output_nc": net.output_nc, "ngf": net.ngf, "norm": net.norm,
              "use_dropout": net.use_dropout}
    if isinstance(net, UnetGenerator):
        return {"name": "unet", "num_downs": net.num_downs, **common}
    if isinstance(net, ResnetGenerator):
        return {"name": "resnet", "n_blocks": net.n_blocks, **common}
    raise TypeError(f"generator_spec: unsupported generator {type(net).__name__}")


__all__ = [
    "GENERATORS", "DISCRIMINATORS", "build_generator", "build_discriminator", "generator_spec", "inference_copy",
    "init_weights", "UnetGenerator", "ResnetGenerator", "NLayerDiscriminator", "PixelDiscriminator",
]
