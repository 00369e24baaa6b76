"""Load an exported bundle and translate images: `load_translator(path)(image)`.

Needs torch, numpy and PIL (onnxruntime for the ONNX backend, this package's `nets` for the eager one) but neither
Lightning nor the config system nor albumentations.

A bundle's net runs on one of three backends, the `Backend` classes in BACKEND_TYPES: `EagerBackend` (the net
rebuilt from weights.safetensors), `OnnxBackend` (model.onnx in onnxruntime) and `Pt2Backend` (model.pt2, the
torch.export program). Each is built by `load(folder, meta, device)` and called on a float32 batch; the
Translator around it does the rest (image kinds, channels, padding to the size multiple, batching).
"""
from __future__ import annotations

import abc
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from datamodules.io import DataError, to_channels
from safeio import ConfigError, LoadError, read_json_object, read_safetensors

FORMATS = (1, 2)  # translator.json formats this version reads
META_FILE = "translator.json"
DEFAULT_FILES = {"onnx": "model.onnx", "pt2": "model.pt2", "weights": "weights.safetensors"}
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's RGB -> L
CPU_WORKERS = 4  # at most this many images side by side in onnxruntime on the CPU (cpu_plan)
RANGE_TOLERANCE = 1e-3  # how far (as a fraction of the value range) float inputs may stray outside it
ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]


class BundleError(LoadError):
    """A bundle whose translator.json is unreadable, incomplete or of an unknown format."""


def read_meta(path: str | Path) -> Tuple[Path, Dict[str, Any]]:
    """A bundle folder or its translator.json -> (folder, checked metadata)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bundle not found: {path}")
    folder, meta_path = (path.parent, path) if path.is_file() else (path, path / META_FILE)
    if path.is_file() and path.name != META_FILE:
        raise BundleError(f"{path}: expected a bundle folder (or its {META_FILE}); a training checkpoint becomes one "
                          f"with `cli.py export --ckpt {path} --out bundle/`")
    if not meta_path.is_file():
        raise FileNotFoundError(f"not an export bundle: {meta_path} not found")
    meta = read_json_object(meta_path, BundleError)
    fmt = meta.get("format", 1)
    if fmt not in FORMATS:
        raise BundleError(f"{meta_path}: bundle format {fmt!r}; this version reads formats {list(FORMATS)}")
    for key in ("input_nc", "output_nc", "value_range", "size_multiple"):
        if key not in meta:
            raise BundleError(f"{meta_path}: missing key '{key}'")
    for key in ("input_nc", "output_nc", "size_multiple"):
        if not isinstance(meta[key], int) or meta[key] < 1:
            raise BundleError(f"{meta_path}: '{key}' must be a positive int, got {meta[key]!r}")
    for key in ("value_range", "input_range"):
        vr = meta.get(key, [0, 1])  # input_range is optional (default: value_range)
        if not (isinstance(vr, list) and len(vr) == 2 and all(isinstance(v, (int, float)) for v in vr)
                and vr[0] < vr[1]):
            raise BundleError(f"{meta_path}: '{key}' must be [low, high] with low < high, got {vr!r}")
    meta.setdefault("files", dict(DEFAULT_FILES))
    return folder, meta


def _need(folder: Path, meta: Dict[str, Any], kind: str) -> Path:
    p = folder / meta["files"].get(kind, DEFAULT_FILES[kind])
    if not p.is_file():
        need = "the eager backend's weights" if kind == "weights" else f"the '{kind}' backend"
        raise FileNotFoundError(f"bundle file missing: {p} (needed by {need})")
    return p


# ---- backends: how a bundle's net runs --------------------------------------------------------------------------
class Backend(abc.ABC):
    """One way to run a bundle's net: `backend(x)` maps an (N, C, H, W) float32 batch to the net's output, on the
    batch's device. Built by `load(folder, meta, device)`; a Translator reads only the three fields below."""

    name: str  # what load_translator's `backend` argument calls it
    any_shape: bool = False  # takes any batch size and any height and width of the size multiple, whatever shapes
    #                          the exported graphs were traced with (translator.json's "input")
    net: Optional[torch.nn.Module] = None  # the torch module itself, where the backend has one (pSp's style-mixed
    #                                        variants need it)

    @classmethod
    @abc.abstractmethod
    def load(cls, folder: Path, meta: Dict[str, Any], device: torch.device) -> "Backend":
        """The backend of the bundle in `folder` (its checked translator.json is `meta`) on `device`."""

    @abc.abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float32 -> the net's output, on x's device."""


class EagerBackend(Backend):
    """The net rebuilt from its spec in translator.json and weights.safetensors (needs this package's `nets`), run
    by PyTorch on `device`."""

    name, any_shape = "eager", True

    def __init__(self, net: torch.nn.Module, device: torch.device):
        self.net, self.device = net.to(device), device

    @classmethod
    def load(cls, folder: Path, meta: Dict[str, Any], device: torch.device) -> "EagerBackend":
        from nets import build_generator, inference_copy

        if meta.get("method") == "psp" and isinstance(meta.get("psp"), dict):
            return cls.load_psp(folder, meta, device)
        spec = meta.get("generator")
        if not isinstance(spec, dict):
            raise BundleError(f"{folder}: translator.json has no 'generator' spec to rebuild the net from; "
                              f"use backend 'onnx' or 'pt2'")
        weights = read_safetensors(_need(folder, meta, "weights"))
        net = inference_copy(build_generator(**spec), norm_stats=meta.get("norm_stats", "running"))
        try:
            net.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise BundleError(f"{folder}: weights.safetensors does not fit the generator {spec}: {e}") from e
        return cls(net, device)

    @classmethod
    def load_psp(cls, folder: Path, meta: Dict[str, Any], device: torch.device) -> "EagerBackend":
        """A pSp bundle's encoder + decoder rebuilt from its spec."""
        from nets.psp import build_psp_net

        net = build_psp_net(meta["psp"]).eval().requires_grad_(False)
        try:
            net.load_state_dict(read_safetensors(_need(folder, meta, "weights")), strict=True)
        except RuntimeError as e:
            raise BundleError(f"{folder}: weights.safetensors does not fit the pSp net of translator.json: {e}"
                              ) from e
        return cls(net, device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.net(x.to(self.device)).to(x.device)

    def __repr__(self) -> str:
        return f"EagerBackend({type(self.net).__name__}, {self.device})"


class OnnxBackend(Backend):
    """model.onnx run by onnxruntime, on the CPU or a CUDA GPU.

    On the CPU a batch is split into single images run side by side by `workers` threads calling one session of
    `threads` intra-op threads (default `cpu_plan()`: one image per core, one thread each; onnxruntime's run is
    thread-safe and lets go of the GIL), with every graph optimisation on. Each image of a batch gives the same
    output either way (norm statistics are per image)."""

    name = "onnx"

    def __init__(self, path: Path, device: torch.device, workers: Optional[int] = None,
                 threads: Optional[int] = None):
        import onnxruntime as ort

        providers: List[Any] = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError(f"device '{device}' asked for, but this onnxruntime has no CUDAExecutionProvider "
                                   f"(it has {ort.get_available_providers()}); use device 'cpu' or backend 'eager'")
            providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
            workers, threads = 1, threads or 0
        elif device.type != "cpu":
            raise ConfigError(f"backend 'onnx' runs on 'cpu' or 'cuda', got device '{device}'", key="backend")
        else:
            plan = cpu_plan()
            workers = plan[0] if workers is None else workers
            threads = plan[1] if threads is None else threads
        if workers < 1 or threads < 0:
            raise ConfigError(f"onnx backend: expected workers >= 1 and threads >= 0, got {workers} and {threads}",
                              key="--cpu-workers")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0: onnxruntime's default (one per physical core)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.workers, self.threads = workers, threads
        batch = self.session.get_inputs()[0].shape[0]  # a name, or an int where the graph's batch is fixed
        split = workers > 1 and not isinstance(batch, int)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="onnx") if split else None

    @classmethod
    def load(cls, folder: Path, meta: Dict[str, Any], device: torch.device) -> "OnnxBackend":
        return cls(_need(folder, meta, "onnx"), device)

    def _run(self, session, x: np.ndarray) -> np.ndarray:
        return session.run(None, {self.input_name: x})[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        a = x.detach().to("cpu", torch.float32).contiguous().numpy()
        if self._pool is None or a.shape[0] == 1:
            y = self._run(self.session, a)
        else:  # one image per thread at a time
            y = np.concatenate(list(self._pool.map(lambda i: self._run(self.session, a[i:i + 1]),
                                                   range(a.shape[0]))))
        return torch.from_numpy(y).to(x.device)

    def __repr__(self) -> str:
        return f"OnnxBackend({self.session.get_providers()[0]}, {self.workers} x {self.threads} threads)"


def cpu_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_plan(cores: Optional[int] = None, workers: Optional[int] = None) -> Tuple[int, int]:
    """How the onnx backend uses the CPU: (images run side by side, intra-op threads each), the cores shared among
    them. By default one image per core, one thread each, up to CPU_WORKERS images."""
    cores = cores or cpu_cores()
    if workers is not None and workers < 1:
        raise ValueError(f"cpu_workers: expected an int >= 1, got {workers!r}")
    workers = workers or max(1, min(cores, CPU_WORKERS))
    return workers, max(1, cores // workers)


class Pt2Backend(Backend):
    """model.pt2, the torch.export program, run by PyTorch on `device`."""

    name = "pt2"

    def __init__(self, path: Path, device: torch.device):
        self.module, self.device = torch.export.load(str(path)).module().to(device), device

    @classmethod
    def load(cls, folder: Path, meta: Dict[str, Any], device: torch.device) -> "Pt2Backend":
        return cls(_need(folder, meta, "pt2"), device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(x.to(self.device)).to(x.device)

    def __repr__(self) -> str:
        return f"Pt2Backend({self.device})"


BACKEND_TYPES: Dict[str, Type[Backend]] = {b.name: b for b in (EagerBackend, OnnxBackend, Pt2Backend)}
BACKENDS = ("auto", *BACKEND_TYPES)  # load_translator's choices


def _eager_psp(folder: Path, meta: Dict[str, Any], device: torch.device) -> EagerBackend:
    """A pSp bundle's eager backend (invert uses its `.net`)."""
    return EagerBackend.load_psp(folder, meta, device)


def predict_backend(path: str | Path, device: str | torch.device = "cpu", variants: int = 0) -> str:
    """The backend `predict --backend auto` runs: onnxruntime on the CPU when the bundle has its model.onnx, traced
    for any image size (or pSp's, which resizes), and no style-mixed variants are wanted (pSp: about twice as fast
    as eager PyTorch, `benchmarks/psp.py --onnx`; pix2pix and CycleGAN: one image per core,
    `benchmarks/predict_throughput.py`), else what load_translator's "auto" picks."""
    folder, meta = read_meta(path)
    onnx = folder / meta["files"].get("onnx", DEFAULT_FILES["onnx"])
    dynamic, _, _ = _accepted(meta)
    any_size = isinstance(meta.get("psp"), dict) or (dynamic["height"] and dynamic["width"])
    if not variants and check_device(device).type == "cpu" and onnx.is_file() and any_size:
        return "onnx"
    return "auto"


def load_translator(path: str | Path, backend: str = "auto", device: str | torch.device = "cpu",
                    cpu_workers: Optional[int] = None) -> "Translator":
    """A bundle folder (or its translator.json) -> Translator.

    backend: "eager" rebuilds the net from weights.safetensors (needs this package's `nets`); "onnx" runs
    model.onnx with onnxruntime; "pt2" runs the torch.export program; "auto" is eager when the bundle names its
    generator, else onnx.
    cpu_workers: the onnx backend on the CPU: how many images run side by side, the cores shared among them
    (default `cpu_plan()`).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend: expected one of {list(BACKENDS)}, got '{backend}'", key="backend")
    device = check_device(device)
    folder, meta = read_meta(path)
    if backend == "auto":
        rebuildable = isinstance(meta.get("generator"), dict) or isinstance(meta.get("psp"), dict)
        backend = "eager" if rebuildable else "onnx"
    try:
        if backend == "onnx" and cpu_workers is not None and device.type == "cpu":
            run: Backend = OnnxBackend(_need(folder, meta, "onnx"), device, *cpu_plan(workers=cpu_workers))
        else:
            run = BACKEND_TYPES[backend].load(folder, meta, device)
    except (FileNotFoundError, BundleError):
        raise
    except Exception as e:  # a truncated or foreign weights.safetensors / model.onnx / model.pt2
        raise BundleError(f"{folder}: cannot load the {backend} model of this bundle ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else 'no message'}); export it again"
                          ) from e
    return Translator(meta, run)


def check_device(device: str | torch.device) -> torch.device:
    """A device this machine has, or a ValueError saying what is missing."""
    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"device: not a torch device: {device!r} (e.g. cpu, cuda, cuda:1)", key="device") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device}: no CUDA GPU is available here (use --device cpu)", key="device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)", key="device")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device}: bundles run on cpu or cuda", key="device")
    return device


# ---- the translator -----------------------------------------------------------------------------------------
def _accepted(meta: Dict[str, Any]) -> Tuple[Dict[str, bool], Dict[str, int], Dict[str, Optional[int]]]:
    """Which of batch/height/width the exported graphs leave free, their minimum, and their size if fixed."""
    inp = meta.get("input", {})
    if "dynamic" in inp:  # format 2
        dynamic = {d: bool(inp["dynamic"].get(d, True)) for d in ("batch", "height", "width")}
        low = {d: int(inp.get("min", {}).get(d, 1)) for d in dynamic}
    else:  # format 1
        spatial = bool(inp.get("dynamic_spatial", True))
        dynamic = {"batch": bool(inp.get("dynamic_batch", True)), "height": spatial, "width": spatial}
        low = {d: 1 for d in dynamic}
    shape = inp.get("example_shape") or [None] * 4
    fixed = {d: None if dynamic[d] else shape[i] for d, i in (("batch", 0), ("height", 2), ("width", 3))}
    return dynamic, low, fixed


class Translator:
    """Translate images with an exported bundle (see `load_translator`).

    Call it on a PIL image, a numpy array ((H, W) or (H, W, C), uint8 or float in [0, 1]), a tensor ((C, H, W) or
    (N, C, H, W), float in the net's value range or uint8), or a list of them; it returns the same kind: PIL for
    PIL, (H, W, C) uint8 arrays for arrays, tensors of the input's dtype and device for tensors. Channels are
    converted to the net's (gray <-> RGB; alpha composited on white, as when reading files); sizes are padded
    (reflection) to the net's size multiple and the output is cropped back, so any size works.
    """

    batch_size = 8  # images of one size translated together when called on a list

    def __init__(self, meta: Dict[str, Any], run: Backend):
        self.meta, self._run = meta, run
        self.backend = run.name  # "eager", "onnx" or "pt2"
        self.input_nc, self.output_nc = int(meta["input_nc"]), int(meta["output_nc"])
        self.lo, self.hi = (float(v) for v in meta["value_range"])
        # inputs may have a range of their own (published pSp sketch models take sketches in [0, 1])
        self.in_lo, self.in_hi = (float(v) for v in meta.get("input_range") or meta["value_range"])
        self.size_multiple = int(meta["size_multiple"])
        _, self._min, fixed = _accepted(meta)
        if run.any_shape:  # the eager net takes any batch and size of the multiple
            fixed = {d: None for d in fixed}
        self._fixed = fixed
        # nets that take one input size only (pSp: the encoder's heads): inputs are resized to it, not padded
        self.input_size = int(meta["input_size"]) if meta.get("input_size") else None
        if self.input_size is not None:
            self._fixed["height"] = self._fixed["width"] = self.input_size
        # > 0: the net takes one-hot label maps of this many classes (segmentation-to-image), not images
        self.label_nc = int(meta.get("label_nc") or 0)
        if self.label_nc and self.label_nc != self.input_nc:
            raise BundleError(f"label_nc {self.label_nc} but input_nc {self.input_nc}: a label-map net takes one "
                              "channel per class")

    def check_variants(self, latent_mask: Optional[Sequence[int]] = None) -> torch.nn.Module:
        """The eager pSp net that draws style-mixed variants, or a ValueError saying why this translator cannot."""
        method = self.meta.get("method")
        if method != "psp":
            raise ConfigError(f"style-mixed variants need a pSp bundle; this one is {method}", key="variants")
        net = self._run.net
        if net is None:
            raise ConfigError(f"style-mixed variants need the eager net of a pSp bundle; this one is loaded with "
                              f"backend '{self.backend}'", key="variants")
        if not list(latent_mask if latent_mask is not None else self.meta.get("latent_mask") or []):
            raise ConfigError("variants: no latent_mask given and the bundle has none (e.g. layers 8..17 at 1024 px)",
                              key="latent_mask")
        return net

    def variants(self, x: torch.Tensor, n: int, latent_mask: Optional[Sequence[int]] = None,
                 alpha: Optional[float] = None, seed: int = 0) -> torch.Tensor:
        """pSp bundles, eager backend: n style-mixed outputs per input, (n, N, 3, H, W). latent_mask and alpha
        default to the bundle's (the model config's `latent_mask`, `mix_alpha`)."""
        net = self.check_variants(latent_mask)
        mask = list(latent_mask if latent_mask is not None else self.meta.get("latent_mask") or [])
        x = x.float()
        if self.input_size is not None and x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=True)
        alpha = alpha if alpha is not None else self.meta.get("mix_alpha")
        device = next(net.parameters()).device
        return net.variants(x.to(device), n, mask, alpha, seed).to(x.device)

    def __repr__(self) -> str:
        return (f"Translator({self.meta.get('method')}, {self.input_nc} -> {self.output_nc} channels, "
                f"value range [{self.lo:g}, {self.hi:g}], size multiple {self.size_multiple}, "
                f"backend {self.backend})")

    # ---- raw tensors --------------------------------------------------------------------------------------
    def translate_batch(self, x: torch.Tensor) -> torch.Tensor:
        """(N, input_nc, H, W) float in the value range -> (N, output_nc, H', W') float, H' = H for
        same-size nets. Pads H, W (reflection) to what the graph accepts and crops the output back."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.input_nc:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise DataError(f"expected a batch (N, {self.input_nc}, H, W), got {got}")
        if not x.is_floating_point():
            raise DataError(f"expected a float batch in the input range [{self.in_lo:g}, {self.in_hi:g}], got "
                            f"{x.dtype} (uint8 images: call the translator itself)")
        n, _, h, w = x.shape
        if n == 0:
            raise DataError(f"expected a batch (N, {self.input_nc}, H, W) with N >= 1, got {tuple(x.shape)}")
        x = x.float()
        if self.input_size is not None and (h, w) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=True)
            h = w = self.input_size
        x = self._pad(x)
        ph, pw = x.shape[-2:]
        chunk = self._fixed["batch"] or n
        outs = []
        for i in range(0, n, chunk):
            part = x[i:i + chunk]
            short = chunk - part.shape[0]
            if short:  # a graph with a fixed batch size: fill up with copies, drop their outputs
                part = torch.cat([part, part[-1:].expand(short, *part.shape[1:])])
            outs.append(self._run(part.contiguous())[: chunk - short])
        y = torch.cat(outs)
        return y[..., : _crop(y.shape[-2], ph, h), : _crop(y.shape[-1], pw, w)]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        th, tw = (self._target("height", h), self._target("width", w))
        if (th, tw) == (h, w):
            return x
        ph, pw = th - h, tw - w
        mode = "reflect" if ph < h and pw < w else "replicate"
        return F.pad(x, (0, pw, 0, ph), mode=mode)

    def _target(self, dim: str, size: int) -> int:
        m = self.size_multiple
        target = max(-(-size // m) * m, self._min[dim])
        fixed = self._fixed[dim]
        if fixed is not None:
            if target > fixed:
                raise DataError(f"this bundle's {self.backend} graph was exported with a fixed {dim} of {fixed}; "
                                f"got {size} (pad or resize the image, or use backend 'eager')")
            target = fixed
        return target

    # ---- conversions ----------------------------------------------------------------------------------------
    def _unit_to_input(self, t: torch.Tensor) -> torch.Tensor:
        return t * (self.in_hi - self.in_lo) + self.in_lo

    def _input_to_unit(self, t: torch.Tensor) -> torch.Tensor:
        return (t - self.in_lo) / (self.in_hi - self.in_lo)

    def _net_to_unit(self, t: torch.Tensor) -> torch.Tensor:
        return (t - self.lo) / (self.hi - self.lo)

    def _channels(self, t: torch.Tensor, what: str) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] -> (N, input_nc, H, W): alpha (last of 2 or 4) composited on white, gray <-> RGB."""
        c = t.shape[1]
        if c == self.input_nc:
            return t
        if c in (2, 4) and self.input_nc in (1, 3):
            alpha = t[:, -1:]
            t, c = t[:, :-1] * alpha + (1 - alpha), c - 1
        if c == self.input_nc:
            return t
        if c == 3 and self.input_nc == 1:
            return (t * t.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
        if c == 1 and self.input_nc == 3:
            return t.expand(-1, 3, -1, -1)
        raise DataError(f"expected {_channel_help(self.input_nc)}, got {what}")

    def from_array(self, a: np.ndarray) -> torch.Tensor:
        """An image array ((H, W) or (H, W, C), uint8 or float in [0, 1]) -> (input_nc, H, W) in the value range.
        uint8 arrays convert exactly as image files do (datamodules.io)."""
        a = np.asarray(a)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim not in (2, 3) or a.shape[0] == 0 or a.shape[1] == 0:
            raise DataError(f"expected an image array (H, W) or (H, W, C), got shape {a.shape}")
        if a.dtype == np.uint8 and (a.ndim == 2 or a.shape[2] in (2, 3, 4)) and self.input_nc in (1, 3):
            u = to_channels(Image.fromarray(a), self.input_nc, "array")
            return self._unit_to_input(torch.from_numpy(np.ascontiguousarray(u.transpose(2, 0, 1))).float() / 255.0)
        if a.dtype == np.uint8:
            unit = a.astype(np.float32) / 255.0
        elif np.issubdtype(a.dtype, np.floating):
            lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
            if not (lo >= -RANGE_TOLERANCE and hi <= 1 + RANGE_TOLERANCE):
                raise DataError(f"expected a float image array in [0, 1], got values in [{lo:g}, {hi:g}] "
                                f"(pass uint8 for 0..255)")
            unit = a.astype(np.float32)
        else:
            raise DataError(f"expected a uint8 or float image array, got dtype {a.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(unit if unit.ndim == 3 else unit[:, :, None]).transpose(2, 0, 1))
        t = self._channels(t[None].clamp(0, 1), f"an array of shape {a.shape}")[0]
        return self._unit_to_input(t)

    def from_label_map(self, labels: np.ndarray) -> torch.Tensor:
        """Class indices (H, W) or (H, W, 1) -> one-hot (label_nc, H', W') of 0 and 1, as the training data: resized
        to the net's fixed input size with nearest neighbour (never interpolated between classes)."""
        if not self.label_nc:
            raise DataError("this translator takes images, not label maps (its bundle has no label_nc)")
        a = np.asarray(labels)
        a = a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a
        if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"expected a label map of integer class indices (H, W), got {a.dtype} {a.shape}")
        if a.size and (int(a.min()) < 0 or int(a.max()) >= self.label_nc):
            raise DataError(f"class indices must lie in [0, {self.label_nc}), got [{int(a.min())}, {int(a.max())}]")
        idx = torch.from_numpy(a.astype(np.int64))
        if self.input_size is not None and idx.shape != (self.input_size, self.input_size):
            idx = F.interpolate(idx[None, None].float(), size=(self.input_size, self.input_size),
                                mode="nearest")[0, 0].long()
        return F.one_hot(idx, self.label_nc).permute(2, 0, 1).float()

    def from_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """(C, H, W) or (N, C, H, W), uint8 or float in the value range -> float (N, input_nc, H, W)."""
        if t.dim() not in (3, 4):
            raise DataError(f"expected an image tensor (C, H, W) or (N, C, H, W), got shape {tuple(t.shape)}")
        x = t[None] if t.dim() == 3 else t
        if t.dtype == torch.uint8:
            unit = x.float() / 255.0
        elif t.is_floating_point():
            x = x.float()
            lo, hi = (float(v) for v in torch.aminmax(x.nan_to_num()))
            slack = RANGE_TOLERANCE * (self.in_hi - self.in_lo)
            if lo < self.in_lo - slack or hi > self.in_hi + slack:
                raise DataError(f"expected a float tensor in the net's input range [{self.in_lo:g}, "
                                f"{self.in_hi:g}] (or uint8), got values in [{lo:g}, {hi:g}]")
            if x.shape[1] == self.input_nc:
                return x
            unit = self._input_to_unit(x)
        else:
            raise DataError(f"expected a uint8 or float image tensor, got {t.dtype}")
        return self._unit_to_input(self._channels(unit, f"a tensor of shape {tuple(t.shape)}"))

    def to_uint8(self, y: torch.Tensor) -> np.ndarray:
        """(C, H, W) float in the value range -> (H, W, C) uint8."""
        u = (self._net_to_unit(y.detach().float().cpu()).clamp(0, 1) * 255.0).round().to(torch.uint8)
        return u.permute(1, 2, 0).contiguous().numpy()

    def _to_pil(self, y: torch.Tensor) -> Image.Image:
        if self.output_nc not in (1, 3):
            raise DataError(f"a PIL image needs 1 or 3 output channels, this net gives {self.output_nc}; "
                            f"call it on a numpy array or tensor instead")
        a = self.to_uint8(y)
        return Image.fromarray(a[:, :, 0] if self.output_nc == 1 else a)

    # ---- any image kind ------------------------------------------------------------------------------------
    def __call__(self, images: Union[ImageLike, Sequence[ImageLike]]):
        """Translate one image or a list of them; each comes back as the kind it was given."""
        if isinstance(images, (list, tuple)):
            return self._call_many(list(images))
        if isinstance(images, torch.Tensor):
            y = self.translate_batch(self.from_tensor(images))
            return self._as_tensor(y, images)
        return self._call_many([images])[0]

    def _call_many(self, images: List[ImageLike]) -> list:
        outputs: List[Any] = [None] * len(images)
        inputs: Dict[int, torch.Tensor] = {}
        for i, image in enumerate(images):
            if isinstance(image, torch.Tensor) and image.dim() == 4:  # already a batch
                outputs[i] = self(image)
            else:
                inputs[i] = self._to_input(image, i)
        groups: Dict[Tuple, List[int]] = defaultdict(list)
        for i, x in inputs.items():
            groups[(tuple(x.shape), x.device)].append(i)
        for idx in groups.values():
            for k in range(0, len(idx), self.batch_size):
                part = idx[k:k + self.batch_size]
                y = self.translate_batch(torch.cat([inputs[i] for i in part]))
                for i, yi in zip(part, y.split(1)):
                    outputs[i] = self._like(yi, images[i])
        return outputs

    def _to_input(self, image: ImageLike, index: int) -> torch.Tensor:
        """One image of any kind -> (1, input_nc, H, W) in the value range."""
        if isinstance(image, Image.Image):
            if self.input_nc not in (1, 3):
                raise DataError(f"expected {_channel_help(self.input_nc)}; PIL images convert to 1 or 3 only")
            a = to_channels(image, self.input_nc, f"image {index}")
            unit = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float() / 255.0
            return self._unit_to_input(unit)[None]
        if isinstance(image, np.ndarray):
            return self.from_array(image)[None]
        if isinstance(image, torch.Tensor):
            return self.from_tensor(image)
        raise TypeError(f"expected a PIL image, numpy array or torch tensor (or a list of them), "
                        f"got {type(image).__name__}")

    def _like(self, y: torch.Tensor, image: ImageLike):
        """(1, output_nc, H, W) output -> the kind of `image`."""
        if isinstance(image, Image.Image):
            return self._to_pil(y[0])
        if isinstance(image, np.ndarray):
            return self.to_uint8(y[0])
        return self._as_tensor(y, image)

    def _as_tensor(self, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if like.dtype == torch.uint8:
            y = (self._net_to_unit(y).clamp(0, 1) * 255.0).round().to(torch.uint8)
        y = y.to(like.device, like.dtype)
        return y if like.dim() == 4 else y[0]


def _crop(out: int, padded: int, original: int) -> int:
    """Where to crop one output side: nets of the same size crop to the input's; k-times upscaling nets to k times
    it; anything else (a fixed output size) is left whole."""
    if out == padded:
        return original
    if out % padded == 0:
        return original * (out // padded)
    return out


def _channel_help(c: int) -> str:
    if c == 1:
        return "a gray image (1 channel; RGB is converted, alpha composited on white)"
    if c == 3:
        return "an RGB image (3 channels; gray is converted, alpha composited on white)"
    return f"an image with exactly {c} channels"
