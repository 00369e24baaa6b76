"""Export bundles: `model.onnx` + `model.pt2` + `weights.safetensors` + `translator.json`, checked for parity.

The graphs map an (N, C, H, W) float32 tensor in the net's value range to the same; decoding and normalisation
stay outside. Batch, height and width are dynamic where the exporter allows it (height and width in multiples of
the net's size multiple); a dim it cannot free stays static and `translator.json` says so. A bundle is built in a
temporary folder beside its destination and renamed into place only after onnxruntime has reproduced eager
PyTorch within `atol`, so a failed export never leaves half a bundle.
"""
from __future__ import annotations

import contextlib
import importlib
import itertools
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.export import Dim, ExportedProgram

from safeio import default_mode

BUNDLE_FORMAT = 2
FILES = {"onnx": "model.onnx", "pt2": "model.pt2", "weights": "weights.safetensors"}
META_FILE = "translator.json"
REQUIRED_META = ("method", "input_nc", "output_nc", "value_range", "size_multiple", "direction", "generator")
RESERVED_META = ("format", "input", "output", "files", "onnx_opset", "torch_version", "onnxruntime_version",
                 "parity", "graph_rewrites")
DIMS = ("batch", "height", "width")  # the dims of (N, C, H, W) that may be dynamic, as indices 0, 2, 3
DIM_INDEX = {"batch": 0, "height": 2, "width": 3}
MAX_BATCH = 4096  # upper bounds declared to torch.export
MAX_SIDE = 8192


class ExportError(RuntimeError):
    """The net could not be exported, or the exported graph does not reproduce it."""


def export_bundle(net: nn.Module, out_dir: str | Path, meta: Dict[str, Any], example: torch.Tensor, *,
                  dynamic_batch: bool = True, dynamic_spatial: bool = True, size_multiple: int = 1,
                  opset: Optional[int] = None, atol: float = 1e-4, check: bool = True,
                  overwrite: bool = False) -> Path:
    """Write a bundle for `net` to `out_dir` and return its path.

    net: the inference module, in eval mode, mapping float32 (N, C, H, W) in `meta["value_range"]` to the same.
    meta: method, input_nc, output_nc, value_range, size_multiple, direction (may be None), generator (the
        `nets.generator_spec` dict that rebuilds the eager net, or None when `nets` cannot build it), plus any
        JSON-serialisable extras (norm_stats, configs); written to translator.json.
    example: an input batch (N, input_nc, H, W) with H, W multiples of size_multiple; fixes static dims.
    check: run onnxruntime and the torch.export program on random inputs (the example's shape and, where dims
        are dynamic, the smallest accepted and a larger one) and raise ExportError if either differs from eager
        PyTorch by more than atol.
    overwrite: replace an existing non-empty `out_dir` (only once the new bundle is complete).
    """
    _check_meta(meta, size_multiple)
    example = _check_example(example, meta, size_multiple)
    if net.training:
        raise ValueError("export_bundle: expected the eval-mode inference module (see nets.inference_copy), "
                         "got a module in training mode")
    out_dir = Path(out_dir)
    check_destination(out_dir, overwrite)
    wanted = [d for d, on in zip(DIMS, (dynamic_batch, dynamic_spatial, dynamic_spatial)) if on]

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    try:
        ep, program, dynamic, fallback = _export(net, example, wanted, size_multiple, opset)
        torch.export.save(ep, tmp / FILES["pt2"])
        program.save(str(tmp / FILES["onnx"]))
        rewrites, onnx_opset, onnx_dims = _prepare_onnx(tmp / FILES["onnx"])
        save_file({k: v.detach().contiguous().clone() for k, v in net.state_dict().items()},
                  str(tmp / FILES["weights"]))
        dynamic = {d: dynamic[d] and isinstance(onnx_dims[DIM_INDEX[d]], str) for d in DIMS}
        ranges = _smallest_accepted(net, ep, _input_ranges(ep, example, dynamic, size_multiple), example)
        parity = None
        if check:
            parity = _parity(net, ep, tmp / FILES["onnx"], _probe_shapes(example, ranges), meta["value_range"])
            parity["atol"] = atol
            worst = max(parity["max_abs_diff"], parity["pt2_max_abs_diff"])
            if not worst <= atol:  # also catches NaN
                raise ExportError(f"the exported graphs differ from eager PyTorch by {worst:.3g} > atol {atol:g} "
                                  f"(onnxruntime {parity['max_abs_diff']:.3g}, torch.export program "
                                  f"{parity['pt2_max_abs_diff']:.3g}) on inputs {parity['shapes']}; "
                                  f"bundle not written")
        inp, out = _io_entries(meta, ep, example, dynamic, ranges)
        info = {
            "format": BUNDLE_FORMAT,
            **meta,
            "input": inp,
            "output": out,
            "dynamic_fallback": fallback,
            "files": {**FILES, "all": sorted(p.name for p in tmp.iterdir()) + [META_FILE]},
            "onnx_opset": onnx_opset,
            "torch_version": torch.__version__,
            "onnxruntime_version": _ort_version(),
            "parity": parity,
            "graph_rewrites": rewrites,
        }
        (tmp / META_FILE).write_text(json.dumps(info, indent=2))
        # mkdtemp's 0700, and safetensors' own temporary-file 0600, would hide the bundle from the user's group
        for f in tmp.iterdir():
            os.chmod(f, default_mode())
        os.chmod(tmp, default_mode(directory=True))
        _move_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# ---- checks at the boundary -----------------------------------------------------------------------------------
def _check_meta(meta: Dict[str, Any], size_multiple: int) -> None:
    if not isinstance(meta, dict):
        raise TypeError(f"export metadata: expected a dict, got {type(meta).__name__}")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"export metadata lacks {missing} (required: {list(REQUIRED_META)})")
    reserved = [k for k in RESERVED_META if k in meta]
    if reserved:
        raise ValueError(f"export metadata: keys {reserved} are written by export_bundle itself; rename them")
    for key in ("input_nc", "output_nc", "size_multiple"):
        if not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < 1:
            raise ValueError(f"export metadata: '{key}' must be a positive int, got {meta[key]!r}")
    vr = meta["value_range"]
    if not (isinstance(vr, (list, tuple)) and len(vr) == 2 and all(isinstance(v, (int, float)) for v in vr)
            and vr[0] < vr[1]):
        raise ValueError(f"export metadata: 'value_range' must be [low, high] with low < high, got {vr!r}")
    if not isinstance(meta["method"], str):
        raise ValueError(f"export metadata: 'method' must be a string, got {meta['method']!r}")
    if meta["direction"] is not None and not isinstance(meta["direction"], str):
        raise ValueError(f"export metadata: 'direction' must be a string or None, got {meta['direction']!r}")
    gen = meta["generator"]
    if gen is not None and not (isinstance(gen, dict) and isinstance(gen.get("name"), str)):
        raise ValueError(f"export metadata: 'generator' must be a nets.generator_spec dict (with 'name') or None, "
                         f"got {gen!r}")
    if meta["size_multiple"] != size_multiple:
        raise ValueError(f"export_bundle: size_multiple={size_multiple} but meta['size_multiple'] is "
                         f"{meta['size_multiple']}; they must agree")
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise ValueError(f"export metadata must be JSON-serialisable: {e}") from e


def _check_example(example: torch.Tensor, meta: Dict[str, Any], mult: int) -> torch.Tensor:
    c = meta["input_nc"]
    if not isinstance(example, torch.Tensor) or example.dim() != 4 or example.shape[1] != c:
        got = tuple(example.shape) if isinstance(example, torch.Tensor) else type(example).__name__
        raise ValueError(f"export_bundle: expected an example batch (N, {c}, H, W), got {got}")
    if example.shape[2] % mult or example.shape[3] % mult:
        raise ValueError(f"export_bundle: expected an example with H, W divisible by {mult}, "
                         f"got {tuple(example.shape)}")
    return example.detach().float().cpu()


def check_destination(out_dir: Path, overwrite: bool) -> None:
    """An empty or new folder, or with `overwrite` a folder holding a bundle and nothing else: --overwrite replaces a
    bundle, never a run directory, a data folder or anything else pointed at by mistake."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"bundle destination exists and is not a folder: {out_dir}")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in _bundle_files(out_dir))
    is_bundle = (out_dir / META_FILE).is_file() and not others
    if not overwrite:
        advice = "pass overwrite=True / --overwrite to replace it" if is_bundle else "choose another folder"
        raise FileExistsError(f"bundle folder exists and is not empty: {out_dir} ({advice})")
    if not is_bundle:
        what = f"it also holds {', '.join(others[:5])}{', ...' if len(others) > 5 else ''}" if others else \
            f"it has no {META_FILE}"
        raise FileExistsError(f"--overwrite replaces a bundle folder only, and {out_dir} is not one ({what}); "
                              f"choose another folder")


def _bundle_files(out_dir: Path) -> set:
    """The names a bundle in `out_dir` consists of: the standard files and those its translator.json lists."""
    names = set(FILES.values()) | {META_FILE}
    try:
        names |= set(json.loads((out_dir / META_FILE).read_text())["files"]["all"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return names


# ---- export with the widest dynamism the net allows ------------------------------------------------------------
def _dynamic_shapes(dims: Sequence[str], mult: int):
    spec: Dict[int, Any] = {}
    if "batch" in dims:
        spec[0] = Dim("batch", min=1, max=MAX_BATCH)
    for name in ("height", "width"):
        if name in dims:
            spec[DIM_INDEX[name]] = mult * Dim(f"{name}_blocks", min=1, max=MAX_SIDE // mult)
    return (spec,)


def _trace_example(example: torch.Tensor, dims: Sequence[str], mult: int) -> torch.Tensor:
    """torch.export specialises dims of size 1 (and derived dims of one block): trace with two of them instead."""
    reps = [2 if (d in dims and example.shape[DIM_INDEX[d]] == (1 if d == "batch" else mult)) else 1
            for d in ("batch", "channels", "height", "width")]
    return example.repeat(*reps) if any(r > 1 for r in reps) else example


def _no_size_one_guards():
    """Trace without assuming dynamic sizes >= 2 (torch.export's "avoiding 0/1 specialization" option), so that
    programs traced at two blocks also accept one (e.g. a 256-px unet_256 input). The parity check runs the
    smallest size too. A no-op on torch versions without the option."""
    try:
        cfg = importlib.import_module("torch.fx.experimental._config")
    except ImportError:
        return contextlib.nullcontext()
    return cfg.patch(backed_size_oblivious=True) if hasattr(cfg, "backed_size_oblivious") else contextlib.nullcontext()


def _export(net: nn.Module, example: torch.Tensor, wanted: List[str], mult: int, opset: Optional[int]):
    """(program, onnx program, {dim: dynamic}, fallback record) with the wanted dynamic dims or, if the exporter
    cannot free them all, the largest subset it can. A net that does not export even with static dims fails
    after two attempts."""
    errors: List[str] = []

    def attempt(dims: List[str]):
        x = _trace_example(example, dims, mult)
        try:
            with _no_size_one_guards():
                ep = torch.export.export(net, (x,), dynamic_shapes=_dynamic_shapes(dims, mult) if dims else None,
                                         strict=False)
                kwargs = {"opset_version": opset} if opset else {}
                program = torch.onnx.export(ep, (x,), dynamo=True, input_names=["image"], output_names=["output"],
                                            verbose=False, **kwargs)
        except Exception as e:  # noqa: BLE001 -- every failure is reported if no attempt works
            errors.append(f"dynamic {dims or 'none'}: {type(e).__name__}: {_first_line(e)}")
            return None
        fallback = None
        if dims != wanted:
            fallback = {"requested": wanted, "static": [d for d in wanted if d not in dims], "reasons": list(errors)}
        return ep, program, {d: d in dims for d in DIMS}, fallback

    done = attempt(wanted)
    if done is None and wanted:
        static = attempt([])
        if static is None:
            raise ExportError("export failed, also with static dims:\n  " + "\n  ".join(errors))
        subsets = [list(c) for k in range(len(wanted) - 1, 0, -1) for c in itertools.combinations(wanted, k)]
        done = next((r for r in map(attempt, subsets) if r is not None), None) or static
        done[3]["reasons"] = list(errors)
    if done is None:
        raise ExportError("export failed:\n  " + "\n  ".join(errors))
    return done


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # terminal colours in exporter messages (kept out of translator.json)


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in ANSI_ESCAPE.sub("", str(e)).splitlines() if ln.strip()]
    return " ".join(lines[:2])[:300] if lines else ""


# ---- what the exported graphs accept ---------------------------------------------------------------------------
def _user_shapes(ep: ExportedProgram):
    """The shapes (ints or SymInts) of the program's image input and of its output."""
    name = next(s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT")
    node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == name)
    out = next(n for n in ep.graph.nodes if n.op == "output").args[0][0]
    return node.meta["val"].shape, out.meta["val"].shape


def _input_ranges(ep: ExportedProgram, example: torch.Tensor, dynamic: Dict[str, bool], mult: int):
    """{dim: (min, max)} the bundle accepts: the example's size for static dims; for dynamic ones the range
    torch.export settled on (the declared one unless it narrowed it). The smallest size is checked in parity."""
    in_shape = _user_shapes(ep)[0]
    ranges = {}
    for d in DIMS:
        i = DIM_INDEX[d]
        if not dynamic[d]:
            ranges[d] = (int(example.shape[i]), int(example.shape[i]))
            continue
        declared = (1, MAX_BATCH) if d == "batch" else (mult, (MAX_SIDE // mult) * mult)
        dim = in_shape[i]
        vr = ep.range_constraints.get(dim.node.expr) if isinstance(dim, torch.SymInt) else None
        try:
            ranges[d] = (max(declared[0], int(vr.lower)), min(declared[1], int(vr.upper)))
        except (AttributeError, TypeError, ValueError, OverflowError):  # no range, or an unbounded one
            ranges[d] = declared
    return ranges


def _smallest_accepted(net: nn.Module, ep: ExportedProgram, ranges: Dict[str, Tuple[int, int]],
                       example: torch.Tensor) -> Dict[str, Tuple[int, int]]:
    """Raise each dynamic dim's lower bound (doubling it, up to the example's size) until both the eager net and
    the program run there, the other dims at the example's size: nets have minimum sizes (a ResNet generator's
    reflection padding needs two pixels after downsampling) that torch.export does not always report."""
    program = ep.module()
    out = dict(ranges)
    for d in DIMS:
        lo, hi = ranges[d]
        i = DIM_INDEX[d]
        size = lo
        while size < example.shape[i]:
            if _runs((net, program), example.shape[:i] + (size,) + example.shape[i + 1:]):
                break
            size *= 2
        out[d] = (min(size, int(example.shape[i])), hi)
    return out


def _runs(modules, shape) -> bool:
    x = torch.zeros(shape)
    try:
        with torch.no_grad():
            for m in modules:
                m(x)
    except Exception:  # noqa: BLE001 -- any failure means "not at this size"
        return False
    return True


def _io_entries(meta: Dict[str, Any], ep: ExportedProgram, example: torch.Tensor, dynamic: Dict[str, bool],
                ranges: Dict[str, Tuple[int, int]]) -> Tuple[Dict, Dict]:
    """translator.json's "input" and "output": shapes (N, H, W for dynamic dims), which dims are dynamic, ranges."""
    in_shape, out_shape = _user_shapes(ep)
    letters = {str(in_shape[DIM_INDEX[d]]): letter for d, letter in zip(DIMS, "NHW") if dynamic[d]}

    def show(dim):
        return int(dim) if not isinstance(dim, torch.SymInt) else letters.get(str(dim), str(dim))

    common = {"dtype": "float32", "value_range": list(meta["value_range"])}
    inp = {"name": "image", "channels": meta["input_nc"], **common,
           "value_range": list(meta.get("input_range") or meta["value_range"]), "shape": [show(d) for d in in_shape],
           "dynamic": dict(dynamic), "min": {d: ranges[d][0] for d in DIMS}, "max": {d: ranges[d][1] for d in DIMS},
           "example_shape": list(example.shape)}
    out = {"name": "output", "channels": meta["output_nc"], **common, "shape": [show(d) for d in out_shape]}
    return inp, out


def _prepare_onnx(path: Path) -> Tuple[Dict[str, int], Optional[int], List[Any]]:
    """Rewrite the convolutions into a few channels of the ONNX graph at `path` into the shape onnxruntime's CPU
    kernels are fast at (translate/deploy/rewrites.py; the parity check then runs on the rewritten graph). A graph
    whose weights live in external files (over 2 GB) is left as it is. Returns (how many were rewritten, the
    model's default-domain opset, its input dims: ints, or names for symbolic dims)."""
    import onnx

    from translate.deploy.rewrites import rewrite_thin_convolutions

    model = onnx.load(str(path), load_external_data=False)
    count = 0
    if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        count = rewrite_thin_convolutions(model)
        if count:
            onnx.save(model, str(path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    dims = [d.dim_param if d.HasField("dim_param") else d.dim_value
            for d in model.graph.input[0].type.tensor_type.shape.dim]
    return {"thin_convolutions": count}, opset, dims


def _ort_version() -> Optional[str]:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


# ---- parity --------------------------------------------------------------------------------------------------
def _probe_shapes(example: torch.Tensor, ranges: Dict[str, Tuple[int, int]]) -> List[Tuple[int, ...]]:
    """The example's shape; where dims are dynamic, also the smallest accepted and a larger one (batch + 1,
    height + 1 block, width + 2 blocks, within range)."""
    n, c, h, w = (int(v) for v in example.shape)
    bigger = {"batch": n + 1, "height": h + ranges["height"][0], "width": w + 2 * ranges["width"][0]}
    if ranges["height"][0] == ranges["height"][1]:
        bigger["height"] = h
    if ranges["width"][0] == ranges["width"][1]:
        bigger["width"] = w
    smallest = (ranges["batch"][0], c, ranges["height"][0], ranges["width"][0])
    larger = tuple(min(bigger[d], ranges[d][1]) if ranges[d][0] < ranges[d][1] else int(example.shape[DIM_INDEX[d]])
                   for d in DIMS)
    larger = (larger[0], c, larger[1], larger[2])
    shapes = [(n, c, h, w)]
    for s in (smallest, larger):
        if s not in shapes:
            shapes.append(s)
    return shapes


def _parity(net: nn.Module, ep: ExportedProgram, onnx_path: Path, shapes, value_range) -> Dict[str, Any]:
    """Max abs difference of onnxruntime (CPU) and of the torch.export program from eager, on random inputs."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    program = ep.module()
    gen = torch.Generator().manual_seed(0)
    lo, hi = value_range
    worst_onnx = worst_pt2 = 0.0
    for shape in shapes:
        x = torch.rand(*shape, generator=gen) * (hi - lo) + lo
        try:
            with torch.no_grad():
                ref = net(x)
                via_pt2 = program(x)
            got = sess.run(None, {name: x.numpy()})[0]
        except Exception as e:
            raise ExportError(f"parity check on an input of shape {list(shape)} failed: {type(e).__name__}: "
                              f"{_first_line(e)}") from e
        if got.shape != tuple(ref.shape):
            raise ExportError(f"onnxruntime output {got.shape} differs from eager {tuple(ref.shape)} for input {shape}")
        worst_onnx = max(worst_onnx, _max_abs(got - ref.numpy()))
        worst_pt2 = max(worst_pt2, _max_abs((via_pt2 - ref).numpy()))
    return {"max_abs_diff": worst_onnx, "pt2_max_abs_diff": worst_pt2, "shapes": [list(s) for s in shapes],
            "runtime": "onnxruntime CPUExecutionProvider"}


def _max_abs(d: np.ndarray) -> float:
    m = float(np.abs(d).max()) if d.size else 0.0
    return m if math.isfinite(m) else float("inf")


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
        out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    except BaseException:
        if old is not None:  # put the previous bundle back
            old.rename(out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
