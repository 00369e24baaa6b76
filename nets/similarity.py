"""Feature-similarity losses of pSp, also used by `evaluate`: identity (ArcFace on the inner face crop) and MoCo
(ResNet-50 features, for non-face domains). Frozen nets; `1 - cos` of their features, averaged over the batch."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from nets.perceptual import read_weights
from safeio import LoadError, strict_load

FACE_CROP_256 = (35, 223, 32, 220)  # pSp's inner-face crop (top, bottom, left, right) of a 256-px face
ID_SIZE = 112  # ArcFace's input side
MOCO_SIZE = 224
RANDOM = "random"  # weight-file value that builds a randomly initialised loss network (smoke tests only)


def face_crop(size: int) -> Tuple[int, int, int, int]:
    """pSp's inner-face crop box scaled from 256 px to `size`."""
    return tuple(int(round(v * size / 256)) for v in FACE_CROP_256)  # type: ignore[return-value]


class FeatureSimilarity(nn.Module):
    """1 - cos of a frozen net's features of y_hat and y, averaged over the batch (the target's without gradient).
    A subclass holds its net and defines `features` (unit vectors); the net stays in eval mode whatever `train`
    asks."""

    def train(self, mode: bool = True) -> "FeatureSimilarity":
        return super().train(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(y)
        return (1 - (self.features(y_hat) * target).sum(dim=1)).mean()


class IDLoss(FeatureSimilarity):
    """1 - cos(ArcFace(crop(y_hat)), ArcFace(crop(y))), averaged over the batch; crops pooled to 112 px."""

    def __init__(self, arcface: nn.Module):
        super().__init__()
        self.arcface = arcface.eval().requires_grad_(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        t, b, l, r = face_crop(x.shape[-1])
        return self.arcface(F.adaptive_avg_pool2d(x[:, :, t:b, l:r], (ID_SIZE, ID_SIZE)))


class MocoLoss(FeatureSimilarity):
    """1 - cos of MoCo v2 ResNet-50 features (after global pooling) of y_hat and y, for non-face domains.

    As the reference computes it, so that its loss weights carry over: images resized to 224 px by nearest
    neighbour and fed in [-1, 1], without ImageNet normalisation."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(MOCO_SIZE, MOCO_SIZE), mode="nearest")
        return F.normalize(self.backbone(x).flatten(1), dim=1)


def load_moco(path: Optional[str], key: str = "model.moco_weights") -> nn.Module:
    """ResNet-50 without its classifier, from a MoCo v2 checkpoint (`module.encoder_q.*`, fc dropped), strictly."""
    import torchvision


    net = torchvision.models.resnet50(weights=None)
    net.fc = nn.Identity()
    if path == RANDOM:
        return net
    if not path:
        raise FileNotFoundError(f"{key} is not set: the MoCo loss needs a MoCo v2 ResNet-50 checkpoint "
                                "(moco_v2_800ep_pretrain.pt); set it or give moco_lambda 0")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{key}: MoCo weights not found: {path} (expected moco_v2_800ep_pretrain.pt)")
    sd = read_weights(path, key)  # weights_only; the checkpoint's `state_dict`; errors name the key
    prefix = "module.encoder_q."
    own = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and not k.startswith(prefix + "fc.")}
    if not own:
        raise LoadError(f"{key} ({path}): no '{prefix}*' keys; expected a MoCo v2 checkpoint")
    return strict_load(net, own, f"{key} ({path})")
