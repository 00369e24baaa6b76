"""Load an exported bundle and translate images: `load_translator(path)(image)`.

Needs torch (and onnxruntime for the ONNX backend) but neither Lightning nor the config system.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from datamodules.io import to_channels

BACKENDS = ("auto", "eager", "onnx", "pt2")
ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]


class BundleError(ValueError):
    pass


def read_meta(path: str | Path) -> tuple[Path, Dict[str, Any]]:
    path = Path(path)
    folder = path.parent if path.name == "translator.json" else path
    meta_path = folder / "translator.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"not an export bundle: {meta_path} not found")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{meta_path}: not valid JSON ({e})") from e
    for key in ("input_nc", "output_nc", "value_range", "size_multiple", "files"):
        if key not in meta:
            raise BundleError(f"{meta_path}: missing key '{key}'")
    return folder, meta


def _need(folder: Path, name: str) -> Path:
    p = folder / name
    if not p.is_file():
        raise FileNotFoundError(f"bundle file missing: {p}")
    return p


def _eager(folder: Path, meta: Dict[str, Any], device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    from safetensors.torch import load_file

    from nets import build_generator, inference_copy

    net = inference_copy(build_generator(**meta["generator"]), norm_stats=meta.get("norm_stats", "running"))
    net.load_state_dict(load_file(str(_need(folder, meta["files"]["weights"]))), strict=True)
    net = net.to(device)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return net(x.to(device)).cpu()

    return run


def _onnx(folder: Path, meta: Dict[str, Any], device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime as ort

    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
    sess = ort.InferenceSession(str(_need(folder, meta["files"]["onnx"])), providers=providers)
    name = sess.get_inputs()[0].name
    return lambda x: torch.from_numpy(sess.run(None, {name: x.float().numpy()})[0])


def _pt2(folder: Path, meta: Dict[str, Any], device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    module = torch.export.load(str(_need(folder, meta["files"]["pt2"]))).module().to(device)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x.to(device)).cpu()

    return run


class Translator:
    """Callable on a PIL image, a numpy array (H, W[, C] uint8, or float in [0, 1]), a tensor ((C, H, W) or
    (N, C, H, W), float in the net's value range, or uint8), or a list of them; returns the same kind.
    Channels are converted to the net's input channels; sizes are padded (reflection) to the net's size multiple
    and the output cropped back, so any size works."""

    def __init__(self, meta: Dict[str, Any], run: Callable[[torch.Tensor], torch.Tensor], backend: str):
        self.meta, self._run, self.backend = meta, run, backend
        self.input_nc, self.output_nc = int(meta["input_nc"]), int(meta["output_nc"])
        self.lo, self.hi = (float(v) for v in meta["value_range"])
        self.multiple = int(meta["size_multiple"])
        self.static_batch = not meta.get("input", {}).get("dynamic_batch", True) and backend != "eager"

    def __repr__(self) -> str:
        return f"Translator({self.meta.get('method')}, {self.input_nc}->{self.output_nc} ch, backend={self.backend})"

    def translate_batch(self, x: torch.Tensor) -> torch.Tensor:
        """(N, input_nc, H, W) float in the value range -> (N, output_nc, H, W); pads/crops to the size multiple."""
        if x.dim() != 4 or x.shape[1] != self.input_nc:
            raise ValueError(f"expected a batch (N, {self.input_nc}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        if self.static_batch:
            y = torch.cat([self._run(x[i:i + 1].contiguous()) for i in range(x.shape[0])])
        else:
            y = self._run(x.float().contiguous())
        return y[..., :h, :w]

    # ---- conversions ------------------------------------------------------------------------------------------
    def from_array(self, a: np.ndarray) -> torch.Tensor:
        if a.dtype != np.uint8:
            a = np.clip(a.astype(np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
            raise ValueError(f"expected an image array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {a.shape}")
        return self._from_pil(Image.fromarray(a))

    def _from_pil(self, img: Image.Image) -> torch.Tensor:
        a = to_channels(img, self.input_nc)
        t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float() / 255.0
        return t * (self.hi - self.lo) + self.lo

    def _from_tensor(self, t: torch.Tensor) -> torch.Tensor:
        if t.dtype == torch.uint8:
            t = t.float() / 255.0 * (self.hi - self.lo) + self.lo
        if t.shape[-3] != self.input_nc:
            if t.shape[-3] == 3 and self.input_nc == 1:
                t = (t * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(-3, keepdim=True)
            elif t.shape[-3] == 1 and self.input_nc == 3:
                t = t.expand(*t.shape[:-3], 3, *t.shape[-2:])
            else:
                raise ValueError(f"expected {self.input_nc} channels, got a tensor of shape {tuple(t.shape)}")
        return t.float()

    def to_uint8(self, y: torch.Tensor) -> np.ndarray:
        y = ((y.clamp(self.lo, self.hi) - self.lo) / (self.hi - self.lo) * 255.0).round().byte()
        a = y.permute(1, 2, 0).numpy()
        return a[:, :, 0] if a.shape[2] == 1 else a

    def __call__(self, images: Union[ImageLike, Sequence[ImageLike]]):
        if isinstance(images, (list, tuple)):
            return [self(im) for im in images]
        if isinstance(images, torch.Tensor):
            batched = images.dim() == 4
            if images.dim() not in (3, 4):
                raise ValueError(f"expected a tensor (C, H, W) or (N, C, H, W), got {tuple(images.shape)}")
            y = self.translate_batch(self._from_tensor(images) if batched else self._from_tensor(images)[None])
            return y if batched else y[0]
        if isinstance(images, Image.Image):
            return Image.fromarray(self.to_uint8(self.translate_batch(self._from_pil(images)[None])[0]))
        if isinstance(images, np.ndarray):
            return self.to_uint8(self.translate_batch(self.from_array(images)[None])[0])
        raise TypeError(f"expected a PIL image, numpy array or tensor, got {type(images).__name__}")


def load_translator(path: str | Path, backend: str = "auto", device: str = "cpu") -> Translator:
    """A bundle folder (or its translator.json) -> Translator. backend: eager (rebuild the net from safetensors;
    needs this package's nets), onnx (onnxruntime), pt2 (torch.export program), auto (eager when possible)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {list(BACKENDS)}, got '{backend}'")
    folder, meta = read_meta(path)
    if backend == "auto":
        backend = "eager" if "generator" in meta else "onnx"
    loader = {"eager": _eager, "onnx": _onnx, "pt2": _pt2}[backend]
    if backend == "eager" and "generator" not in meta:
        raise BundleError(f"{folder}: no 'generator' entry in translator.json; use backend 'onnx' or 'pt2'")
    return Translator(meta, loader(folder, meta, device), backend)
