"""Load StyleGAN2 generators from the published formats, strictly and without executing code from a file.

- NVIDIA: a `{"init_kwargs", "state_dict"}` .pt, or a network pickle (.pkl) read through an allow-list unpickler
  that rebuilds tensors and records NVIDIA's persistent objects as inert stubs (their embedded source is ignored).
- rosinality: `{"g_ema", "latent_avg"}` .pt, or the `decoder.*` part of a pSp checkpoint (not wired in yet).
- ours: a folder with `prior.safetensors` + `prior.json` (`save_prior`), which the others convert into.
"""
from __future__ import annotations

import io
import json
import pickle
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Mapping

import numpy as np
import torch

from nets.strict import strict_load
from priors.stylegan2 import Generator, GeneratorConfig

PRIOR_FORMAT = 1


class PriorLoadError(ValueError):
    pass


def load_strict(net: torch.nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> torch.nn.Module:
    return strict_load(net, sd, source, PriorLoadError)


# ---- NVIDIA network pickles -----------------------------------------------------------------------------------
class PersistentStub:
    """Stands in for an object of NVIDIA's persistent classes: keeps its recorded state, runs none of its code."""

    def __init__(self, meta: Dict[str, Any]):
        self.class_name = meta.get("class_name")
        self.state = meta.get("state", {}) or {}
        # NVIDIA's persistence keeps the constructor arguments in the object's state
        self.init_args = tuple(meta.get("init_args") or self.state.get("_init_args") or ())
        self.init_kwargs = dict(meta.get("init_kwargs") or self.state.get("_init_kwargs") or {})

    def tensors(self, prefix: str = "") -> "OrderedDict[str, torch.Tensor]":
        """Parameters and persistent buffers, named as in the module's state_dict."""
        out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        skip = set(self.state.get("_non_persistent_buffers_set", ()) or ())
        for name, t in (self.state.get("_parameters") or {}).items():
            if t is not None:
                out[prefix + name] = t.detach()
        for name, t in (self.state.get("_buffers") or {}).items():
            if t is not None and name not in skip:
                out[prefix + name] = t
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, PersistentStub):
                out.update(child.tensors(f"{prefix}{name}."))
            elif child is not None:
                raise PriorLoadError(f"unexpected module object {type(child).__name__} at {prefix}{name}")
        return out


def _load_storage(data: bytes):
    return torch.load(io.BytesIO(data), weights_only=True)


class SafeUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _load_storage,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentStub,
        ("dnnlib.util", "EasyDict"): dict,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "scalar"): np.core.multiarray.scalar,
        ("numpy._core.multiarray", "scalar"): np.core.multiarray.scalar,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load '{module}.{name}' from a network pickle: only tensors, containers and NVIDIA's "
                "persistent-object records are allowed (nothing in the file is executed)") from None


def read_network_pickle(path: str | Path) -> Dict[str, Any]:
    with open(path, "rb") as f:
        return SafeUnpickler(f).load()


def load_nvlabs_pickle(path: str | Path, key: str = "G_ema") -> Generator:
    data = read_network_pickle(path)
    if not isinstance(data, dict) or key not in data or not isinstance(data[key], PersistentStub):
        raise PriorLoadError(f"{path}: no '{key}' network in this pickle (found {list(data)[:8]})")
    stub = data[key]
    G = Generator(**stub.init_kwargs)
    return load_strict(G, stub.tensors(), f"{path} [{key}]").eval()


def load_nvlabs_state(obj: Mapping[str, Any], source: str) -> Generator:
    G = Generator(**obj["init_kwargs"])
    return load_strict(G, obj["state_dict"], source).eval()


def load_rosinality(obj: Mapping[str, Any], source: str) -> Generator:
    """rosinality `{"g_ema", "latent_avg"}` or a pSp checkpoint (`state_dict` with `decoder.*`, `latent_avg`)."""
    from priors.rosinality import RosinalityError, rosinality_to_nvlabs

    if "g_ema" in obj:
        sd = obj["g_ema"]
    else:
        sd = {k[len("decoder."):]: v for k, v in obj["state_dict"].items() if k.startswith("decoder.")}
        if not sd:
            raise PriorLoadError(f"{source}: a checkpoint without 'g_ema' or 'decoder.*' generator weights")
    latent_avg = obj.get("latent_avg")
    try:
        kwargs, nv = rosinality_to_nvlabs(sd, latent_avg.float().cpu() if latent_avg is not None else None, source)
    except RosinalityError as e:
        raise PriorLoadError(str(e)) from e
    G = Generator(**kwargs)
    if latent_avg is None:  # keep our zero-initialised w_avg: say so through strictness on every other key
        nv["mapping.w_avg"] = G.mapping.w_avg.clone()
    for name, buf in G.named_buffers():  # resampling filters are rebuilt, not read (checked by the converter)
        if name.endswith("resample_filter"):
            nv[name] = buf.clone()
    return load_strict(G, nv, source).eval()


# ---- our format ---------------------------------------------------------------------------------------------
def save_prior(G: Generator, out: str | Path) -> Path:
    """Write `prior.safetensors` + `prior.json` into the folder `out`."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().clone() for k, v in G.state_dict().items()}, str(out / "prior.safetensors"))
    meta = {"format": PRIOR_FORMAT, "architecture": "stylegan2", "generator": asdict(G.config),
            "n_latent": G.num_ws}
    (out / "prior.json").write_text(json.dumps(meta, indent=2))
    return out


def load_own(folder: Path) -> Generator:
    from safetensors.torch import load_file

    meta_path, weights = folder / "prior.json", folder / "prior.safetensors"
    for p in (meta_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"prior file not found: {p}")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != PRIOR_FORMAT:
        raise PriorLoadError(f"{meta_path}: unsupported prior format {meta.get('format')}")
    G = Generator.from_config(GeneratorConfig(**meta["generator"]))
    return load_strict(G, load_file(str(weights)), str(weights)).eval()


# ---- one entry point ----------------------------------------------------------------------------------------
def load_prior(path: str | Path) -> Generator:
    """Any supported format -> Generator (eval mode): our folder / prior.json, an NVIDIA .pkl or .pt."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prior not found: {path}")
    if path.is_dir():
        return load_own(path)
    if path.name in ("prior.json", "prior.safetensors"):
        return load_own(path.parent)
    if path.suffix == ".pkl":
        return load_nvlabs_pickle(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PriorLoadError(f"cannot read {path} with weights_only=True: {str(e).splitlines()[0]}") from e
    if isinstance(obj, Mapping) and "init_kwargs" in obj and "state_dict" in obj:
        return load_nvlabs_state(obj, str(path))
    if isinstance(obj, Mapping) and ("g_ema" in obj or "state_dict" in obj):
        return load_rosinality(obj, str(path))
    raise PriorLoadError(f"{path}: not a known StyleGAN2 format (keys: {list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__})")


def convert_prior(src: str | Path, out: str | Path) -> Path:
    return save_prior(load_prior(src), out)
