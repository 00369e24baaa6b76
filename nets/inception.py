"""Inception-v3 pool features (2048-d) for FID and KID, from a weight file the user brings. Nothing is downloaded.

Two layouts (`layout=`):
- "fid": the network of the FID paper's TensorFlow graph (inception-2015-12-05) as converted to PyTorch for
  pytorch-fid (`pt_inception-2015-12-05-6726825d.pth`) and torch-fidelity (`weights-inception-2015-12-05-6726825d.pth`):
  1008 classes, average pools in the Inception-A/C/E blocks that ignore the zero padding, a max pool in the last
  block, images resized to 299 with TensorFlow 1.x bilinear sampling and scaled as (x - 128) / 128 from [0, 255].
  FID/KID computed with it are the published kind.
- "torchvision": torchvision's `inception_v3` ImageNet state dict (`inception_v3_google-*.pth`; `AuxLogits.*` is
  dropped). Its features differ from the TensorFlow graph's, so FID/KID from it are NOT comparable with published
  numbers: use it only to compare your own runs with each other.

Keys are torchvision's `Inception3` names (`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_mean`, ...,
`fc.weight`), which both converted files use; loading is strict (every key and shape) with `weights_only=True`.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import torch
import torch.nn.functional as F
from torchvision.models.inception import BasicConv2d, Inception3, InceptionA, InceptionAux, InceptionB, InceptionC
from torchvision.models.inception import InceptionD, InceptionE

from nets.junyanz import WeightsImportError
from nets.perceptual import read_weights
from safeio import strict_load

INPUT_SIZE = 299  # the side Inception-v3 was trained at; every image is resized to it
NUM_FEATURES = 2048  # the pool3 features FID and KID use
LAYOUTS: Dict[str, int] = {"fid": 1008, "torchvision": 1000}  # layout -> classes of its `fc` (kept for strictness)


# ---- the TensorFlow graph's blocks: padding-free average pools, and a max pool in the last block --------------------
def _pool_avg_no_pad(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _pool_max(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class TFInceptionA(InceptionA):
    """torchvision's InceptionA with TensorFlow's average pool (padding not counted)."""

    def _forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), b5, b3, self.branch_pool(_pool_avg_no_pad(x))]


class TFInceptionC(InceptionC):
    """torchvision's InceptionC with TensorFlow's average pool (padding not counted)."""

    def _forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            b7d = conv(b7d)
        return [self.branch1x1(x), b7, b7d, self.branch_pool(_pool_avg_no_pad(x))]


class TFInceptionE(InceptionE):
    """torchvision's InceptionE with the TensorFlow graph's pool: average without padding (Mixed_7b) or max
    (Mixed_7c, a quirk of that graph that FID inherited)."""

    def __init__(self, in_channels: int, pool: str = "avg", conv_block=None):
        super().__init__(in_channels, conv_block)
        self.pool = _pool_max if pool == "max" else _pool_avg_no_pad

    def _forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        b3d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = torch.cat([self.branch3x3dbl_3a(b3d), self.branch3x3dbl_3b(b3d)], 1)
        return [self.branch1x1(x), b3, b3d, self.branch_pool(self.pool(x))]


def resize_bilinear_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize as TensorFlow 1.x `resize_bilinear(align_corners=False)` does it: output pixel i samples the
    input at i * in / out (no half-pixel offset), the last row/column repeated at the border."""
    def axis(n_in: int):
        pos = torch.arange(size, dtype=torch.float32, device=x.device) * torch.tensor(n_in / size,
                                                                                     dtype=torch.float32,
                                                                                     device=x.device)
        lo = pos.long()
        return lo, (lo + 1).clamp(max=n_in - 1), (pos - lo.float()).to(x.dtype)

    ylo, yhi, dy = axis(x.shape[2])
    xlo, xhi, dx = axis(x.shape[3])
    top, bottom = x[:, :, ylo], x[:, :, yhi]
    top = top[..., xlo] + (top[..., xhi] - top[..., xlo]) * dx
    bottom = bottom[..., xlo] + (bottom[..., xhi] - bottom[..., xlo]) * dx
    return top + (bottom - top) * dy.view(-1, 1)


class InceptionFeatures(Inception3):
    """(N, 3, H, W) images -> (N, 2048) Inception-v3 pool features, for torchmetrics' FID/KID (`num_features`).

    Input: uint8 in [0, 255] or float in [0, 1]; 1-channel images are taken as gray RGB; any size (resized to 299).
    Always in eval mode and frozen. Build with random weights (tests) or with `load_inception`.
    """

    num_features = NUM_FEATURES

    def __init__(self, layout: str = "fid"):
        if layout not in LAYOUTS:
            raise ValueError(f"inception layout: expected one of {sorted(LAYOUTS)}, got {layout!r}")
        blocks = ([BasicConv2d, TFInceptionA, InceptionB, TFInceptionC, InceptionD, TFInceptionE, InceptionAux]
                  if layout == "fid" else None)
        super().__init__(num_classes=LAYOUTS[layout], aux_logits=False, transform_input=False,
                         inception_blocks=blocks, init_weights=False)
        if layout == "fid":
            self.Mixed_7c = TFInceptionE(2048, pool="max")
        self.layout = layout
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "InceptionFeatures":
        """A feature extractor never trains (BatchNorm keeps its running statistics)."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self._prepare(images)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"):
            x = getattr(self, name)(x)
        return torch.flatten(x, 1)  # (N, 2048)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Decode to the network's input range at 299x299: [-1, 1] in both layouts, from [0, 255] for "fid"."""
        if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] not in (1, 3):
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ValueError(f"InceptionFeatures: expected an image batch (N, 3, H, W), uint8 or float in [0, 1], "
                             f"got {shape}")
        x = images.float() if images.dtype == torch.uint8 else images.float() * 255.0  # [0, 255]
        x = x.expand(-1, 3, -1, -1)
        if self.layout == "fid":
            return (resize_bilinear_tf1(x, INPUT_SIZE) - 128.0) / 128.0
        x = F.interpolate(x / 255.0, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return (x - 0.5) / 0.5


def inception_keys(sd: Mapping[str, torch.Tensor], layout: str, source: str) -> "OrderedDict[str, torch.Tensor]":
    """A converted FID file or torchvision's inception_v3 state dict -> our keys.

    - BatchNorm `num_batches_tracked` counters (no effect in eval mode) are added where a file lacks them;
    - torchvision's auxiliary classifier (`AuxLogits.*`, training only) is dropped for the "torchvision" layout.
    Anything else must match key for key (the strict load lists what does not)."""
    out = OrderedDict((k, v) for k, v in sd.items() if not (layout == "torchvision" and k.startswith("AuxLogits.")))
    if not any(k.startswith("Conv2d_1a_3x3.") for k in out):
        raise WeightsImportError(f"{source}: expected Inception-v3 keys (Conv2d_1a_3x3.conv.weight, Mixed_5b..., "
                                 f"fc.weight), got keys {list(sd)[:4]}")
    for k in [k for k in out if k.endswith(".bn.running_var")]:
        out.setdefault(k.replace("running_var", "num_batches_tracked"), torch.tensor(0, dtype=torch.long))
    return out


def load_inception(path: Optional[str | Path], layout: str = "fid",
                   key: str = "inception_weights") -> InceptionFeatures:
    """InceptionFeatures with the user's weight file, loaded strictly. `key` names the option or config key in
    error messages. A 1000-class file given as "fid" (or 1008 as "torchvision") is refused with a hint."""
    net = InceptionFeatures(layout)
    source = f"{key} ({path})"
    sd = inception_keys(read_weights(path, key), layout, source)
    fc = sd.get("fc.weight")
    if fc is not None and fc.shape[0] != LAYOUTS[layout]:
        other = next((name for name, n in LAYOUTS.items() if n == fc.shape[0]), None)
        hint = f"; this looks like the '{other}' layout (set its layout option)" if other else ""
        raise WeightsImportError(f"{source}: the '{layout}' layout has {LAYOUTS[layout]} classes, the file's "
                                 f"fc.weight has {fc.shape[0]}{hint}")
    return strict_load(net, sd, source).eval()
