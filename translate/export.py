"""Export bundles: `model.onnx` + `model.pt2` + `weights.safetensors` + `translator.json`, checked for parity.

The graphs map an (N, C, H, W) float32 tensor in the net's value range to the same; decoding and normalisation
stay outside. A bundle is built in a temporary folder beside its destination and renamed into place only after
onnxruntime has reproduced eager PyTorch within `atol`, so a failed export never leaves half a bundle.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.export import Dim

BUNDLE_FORMAT = 1
REQUIRED_META = ("method", "input_nc", "output_nc", "value_range", "size_multiple", "direction")
MAX_SIDE = 8192


class ExportError(RuntimeError):
    pass


def _dynamic_shapes(dynamic_batch: bool, dynamic_spatial: bool, mult: int):
    dims: Dict[int, Any] = {}
    if dynamic_batch:
        dims[0] = Dim("batch", min=1, max=4096)
    if dynamic_spatial:
        dims[2] = mult * Dim("h_blocks", min=1, max=MAX_SIDE // mult)
        dims[3] = mult * Dim("w_blocks", min=1, max=MAX_SIDE // mult)
    return (dims,)


def _export_program(net: nn.Module, example: torch.Tensor, dynamic_batch: bool, dynamic_spatial: bool, mult: int):
    """torch.export with the widest dynamism the net allows: batch + spatial, else batch only, else static."""
    attempts = [(dynamic_batch, dynamic_spatial)]
    if dynamic_spatial:
        attempts.append((dynamic_batch, False))
    if dynamic_batch:
        attempts.append((False, False))
    errors = []
    for batch, spatial in attempts:
        try:
            ep = torch.export.export(net, (example,), dynamic_shapes=_dynamic_shapes(batch, spatial, mult), strict=False)
            return ep, {"batch": batch, "spatial": spatial}
        except Exception as e:  # report every attempt if none works
            errors.append(f"batch={batch}, spatial={spatial}: {str(e).splitlines()[0]}")
    raise ExportError("torch.export failed:\n  " + "\n  ".join(errors))


def _check_meta(meta: Dict[str, Any]) -> None:
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"export metadata lacks {missing}")


def _probe_inputs(example: torch.Tensor, dynamic: Dict[str, bool], mult: int):
    """The example plus, where dims are dynamic, another batch size and spatial size."""
    yield example
    n, c, h, w = example.shape
    n2 = n + 1 if dynamic["batch"] else n
    h2, w2 = (h + mult, w + 2 * mult) if dynamic["spatial"] else (h, w)
    if (n2, h2, w2) != (n, h, w):
        lo, hi = example.min().item(), example.max().item()
        yield torch.rand(n2, c, h2, w2, generator=torch.Generator().manual_seed(1)) * (hi - lo) + lo


def parity(net: nn.Module, onnx_path: Path, inputs) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = net(x).numpy()
        got = sess.run(None, {name: x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"onnxruntime output {got.shape} differs from eager {ref.shape} for input {tuple(x.shape)}")
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def export_bundle(net: nn.Module, out_dir: str | Path, meta: Dict[str, Any], example: torch.Tensor, *,
                  dynamic_batch: bool = True, dynamic_spatial: bool = True, size_multiple: int = 1,
                  opset: Optional[int] = None, atol: float = 1e-4, check: bool = True,
                  overwrite: bool = False) -> Path:
    """Write a bundle for `net` (already the eval-mode inference module) to `out_dir`; return its path."""
    _check_meta(meta)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"bundle folder exists and is not empty: {out_dir} (pass overwrite=True / --overwrite)")
    net = net.eval()
    example = example.detach().float()
    if dynamic_batch and example.shape[0] == 1:  # torch.export specialises dims of size 1
        example = torch.cat([example, example.flip(0)], 0)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    try:
        ep, dynamic = _export_program(net, example, dynamic_batch, dynamic_spatial, size_multiple)
        torch.export.save(ep, tmp / "model.pt2")
        kwargs = {"opset_version": opset} if opset else {}
        program = torch.onnx.export(ep, (example,), dynamo=True, input_names=["image"], output_names=["output"],
                                    verbose=False, **kwargs)
        program.save(str(tmp / "model.onnx"))
        save_file({k: v.detach().contiguous().clone() for k, v in net.state_dict().items()},
                  str(tmp / "weights.safetensors"))
        max_diff = parity(net, tmp / "model.onnx", _probe_inputs(example, dynamic, size_multiple)) if check else None
        if check and not max_diff <= atol:
            raise ExportError(f"onnxruntime differs from PyTorch by {max_diff:.3g} > atol {atol:g}; bundle not written")
        info = {
            "format": BUNDLE_FORMAT,
            **meta,
            "input": {"shape": ["N", meta["input_nc"], "H", "W"], "dtype": "float32",
                      "dynamic_batch": dynamic["batch"], "dynamic_spatial": dynamic["spatial"],
                      "example_shape": list(example.shape)},
            "output": {"shape": ["N", meta["output_nc"], "H", "W"], "dtype": "float32"},
            "files": {"onnx": "model.onnx", "pt2": "model.pt2", "weights": "weights.safetensors"},
            "onnx_opset": opset or _opset_of(tmp / "model.onnx"),
            "torch_version": torch.__version__,
            "parity": {"max_abs_diff": max_diff, "atol": atol, "runtime": "onnxruntime CPU"},
        }
        (tmp / "translator.json").write_text(json.dumps(info, indent=2, default=str))
        _move_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _opset_of(path: Path) -> Optional[int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{tmp.name[-8:]}")
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
