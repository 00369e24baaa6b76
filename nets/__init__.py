"""Networks of the reference pix2pix/CycleGAN code. One visible dict per kind; the tests iterate them.

`build_generator` / `build_discriminator` are the reference's `define_G` / `define_D` without the device handling:
they build the net named in the dict, then initialise it as the reference does, so that with the same seed a net's
weights are the reference's, bit for bit (whole models only where the reference draws in the same order: its
versions before 2025 built and initialised one net after the other; the 2025 one builds all nets first).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from torch import nn

from nets.discriminators import NLayerDiscriminator, PixelDiscriminator
from nets.generators import ResnetGenerator, UnetGenerator
from nets.init import init_weights
from nets.norm import get_norm_layer, inference_copy
from safeio.errors import ConfigError


def _unet(num_downs_fixed: Optional[int]) -> Callable[..., nn.Module]:
    """unet_128 / unet_256 fix the depth (7 / 8 stride-2 levels); plain "unet" takes it from `num_downs`."""

    def build(input_nc, output_nc, ngf, norm, use_dropout, num_downs, n_blocks):
        if num_downs_fixed is None and num_downs is None:
            raise ConfigError("netG 'unet' needs num_downs (the number of stride-2 levels: the image side must be a "
                              "multiple of 2**num_downs, e.g. 5 for 32 px)", key="netG")
        if num_downs_fixed is not None and num_downs not in (None, num_downs_fixed):
            raise ConfigError(f"netG 'unet_{2 ** num_downs_fixed}' has num_downs={num_downs_fixed}, "
                              f"got num_downs={num_downs} (use netG 'unet' for another depth)", key="netG")
        depth = num_downs_fixed if num_downs_fixed is not None else num_downs
        return UnetGenerator(input_nc, output_nc, depth, ngf=ngf, norm=norm, use_dropout=use_dropout)

    return build


def _resnet(n_blocks_fixed: Optional[int]) -> Callable[..., nn.Module]:
    """resnet_6blocks / resnet_9blocks fix the block count; plain "resnet" takes it from `n_blocks`."""

    def build(input_nc, output_nc, ngf, norm, use_dropout, num_downs, n_blocks):
        if n_blocks_fixed is None and n_blocks is None:
            raise ConfigError("netG 'resnet' needs n_blocks (the number of residual blocks, e.g. 9)", key="netG")
        if n_blocks_fixed is not None and n_blocks not in (None, n_blocks_fixed):
            raise ConfigError(f"netG 'resnet_{n_blocks_fixed}blocks' has n_blocks={n_blocks_fixed}, "
                              f"got n_blocks={n_blocks} (use netG 'resnet' for another count)", key="netG")
        blocks = n_blocks_fixed if n_blocks_fixed is not None else n_blocks
        return ResnetGenerator(input_nc, output_nc, ngf=ngf, norm=norm, use_dropout=use_dropout, n_blocks=blocks)

    return build


def _n_layers(n_layers_fixed: Optional[int]) -> Callable[..., nn.Module]:
    """basic = the 70x70 PatchGAN (3 layers); n_layers takes the depth from `n_layers`."""

    def build(input_nc, ndf, n_layers, norm):
        if n_layers_fixed is not None and n_layers != n_layers_fixed:
            raise ConfigError(f"netD 'basic' is the 70x70 PatchGAN with n_layers={n_layers_fixed}, "
                              f"got n_layers={n_layers} (use netD 'n_layers' for another depth)", key="netD")
        return NLayerDiscriminator(input_nc, ndf, n_layers=n_layers, norm=norm)

    return build


def _pixel(input_nc, ndf, n_layers, norm):
    return PixelDiscriminator(input_nc, ndf, norm=norm)


# builder(input_nc, output_nc, ngf, norm, use_dropout, num_downs, n_blocks) -> generator
GENERATORS: Dict[str, Callable[..., nn.Module]] = {
    "unet_128": _unet(7),
    "unet_256": _unet(8),
    "unet": _unet(None),  # any depth (num_downs); what `generator_spec` names every U-Net
    "resnet_6blocks": _resnet(6),
    "resnet_9blocks": _resnet(9),
    "resnet": _resnet(None),  # any block count (n_blocks); what `generator_spec` names every ResNet generator
}

# builder(input_nc, ndf, n_layers, norm) -> discriminator
DISCRIMINATORS: Dict[str, Callable[..., nn.Module]] = {
    "basic": _n_layers(3),
    "n_layers": _n_layers(None),
    "pixel": _pixel,
}


def build_generator(name: str, input_nc: int, output_nc: int, ngf: int = 64, norm: str = "batch",
                    use_dropout: bool = False, num_downs: Optional[int] = None, n_blocks: Optional[int] = None,
                    init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """The generator `name` (a key of GENERATORS), initialised as the reference's `define_G` does."""
    if name not in GENERATORS:
        raise ConfigError(f"netG: expected one of {sorted(GENERATORS)}, got {name!r}", key="netG")
    get_norm_layer(norm)  # an unknown norm fails here, naming the valid ones
    net = GENERATORS[name](input_nc, output_nc, ngf, norm, use_dropout, num_downs, n_blocks)
    return init_weights(net, init_type, init_gain)


def build_discriminator(name: str, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch",
                        init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """The discriminator `name` (a key of DISCRIMINATORS), initialised as the reference's `define_D` does."""
    if name not in DISCRIMINATORS:
        raise ConfigError(f"netD: expected one of {sorted(DISCRIMINATORS)}, got {name!r}", key="netD")
    get_norm_layer(norm)
    net = DISCRIMINATORS[name](input_nc, ndf, n_layers, norm)
    return init_weights(net, init_type, init_gain)


def generator_spec(net: nn.Module) -> Dict[str, Any]:
    """Plain constructor arguments: `build_generator(**generator_spec(net))` rebuilds the architecture.

    Works on inference copies too (`inference_copy` keeps the class and its attributes).
    """
    if not isinstance(net, (UnetGenerator, ResnetGenerator)):
        raise TypeError(f"generator_spec: expected a UnetGenerator or ResnetGenerator, got {type(net).__name__}")
    common = {"input_nc": net.input_nc, "output_nc": net.output_nc, "ngf": net.ngf, "norm": net.norm,
              "use_dropout": net.use_dropout}
    if isinstance(net, UnetGenerator):
        return {"name": "unet", "num_downs": net.num_downs, **common}
    if net.padding_type != "reflect":
        raise ValueError(f"generator_spec: build_generator only builds reflect-padded ResNet generators, "
                         f"got padding_type={net.padding_type!r}")
    return {"name": "resnet", "n_blocks": net.n_blocks, **common}

__all__ = [
    "GENERATORS", "DISCRIMINATORS", "build_generator", "build_discriminator", "generator_spec", "get_norm_layer",
    "inference_copy", "init_weights", "UnetGenerator", "ResnetGenerator", "NLayerDiscriminator",
    "PixelDiscriminator",
]
