"""An unpickler that runs no code: NVIDIA's network pickles (.pkl) read as tensors, containers and inert records.

A pickle names the globals it needs; this one gets only those in SAFE_PICKLE_GLOBALS (tensor rebuilders, plain
containers, numpy data) and NVIDIA's persistent-object records, which become PersistentStub objects holding the
class name and the pickled state. Anything else is refused with UnsafePickleError naming the global.
"""
from __future__ import annotations

import copyreg
import io
import pickle
from collections import OrderedDict
from typing import Any, Dict, Tuple

import numpy as np
import torch

from safeio.errors import LoadError


class UnsafePickleError(LoadError, pickle.UnpicklingError):
    """A network pickle that references something other than tensors, containers and NVIDIA's object records."""

    def __init__(self, message: str, refused: str = ""):
        super().__init__(message)
        self.refused = refused  # the refused global, "module.name" ("" for a refused persistent id)


class PersistentStub:
    """Stands in for an object of one of NVIDIA's persistent classes (a network module): records the class name and
    the pickled state, runs none of the code the pickle carries with it."""

    def __init__(self, meta: Dict[str, Any]):
        if not isinstance(meta, dict) or not isinstance(meta.get("state", {}), dict):
            raise UnsafePickleError(f"unexpected persistent-object record: {type(meta).__name__}")
        self.class_name = str(meta.get("class_name"))
        self.state: Dict[str, Any] = meta.get("state") or {}
        self.init_args = tuple(self.state.get("_init_args") or ())  # NVIDIA keeps the constructor arguments
        self.init_kwargs = dict(self.state.get("_init_kwargs") or {})

    def tensors(self, prefix: str = "") -> "OrderedDict[str, torch.Tensor]":
        """Parameters and persistent buffers, named as in the module's state_dict."""
        out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
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
                raise LoadError(f"unexpected module object {type(child).__name__} at {prefix}{name}")
        return out


def _load_storage(data: bytes):
    """A storage pickled by torch (torch.save into bytes): read with weights_only."""
    return torch.load(io.BytesIO(data), weights_only=True)


_np_core = np._core if hasattr(np, "_core") else np.core  # numpy 2 | 1 (pickles name either)
_np_multiarray, _np_numeric = _np_core.multiarray, _np_core.numeric

# (module, name) -> what the unpickler returns for it. Tensors, containers, numpy data and stubs: nothing that
# imports a module, evaluates code, or touches files or processes.
SAFE_PICKLE_GLOBALS: Dict[Tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,  # protocol < 2 objects, of allowed classes only
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentStub,
    ("dnnlib.util", "EasyDict"): dict,
    ("dnnlib", "EasyDict"): dict,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _np_multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _np_multiarray.scalar,
    ("numpy.core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _np_numeric._frombuffer,  # arrays pickled with protocol 5
    ("numpy._core.numeric", "_frombuffer"): _np_numeric._frombuffer,
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler whose globals come from SAFE_PICKLE_GLOBALS only; anything else is refused."""

    def find_class(self, module: str, name: str):
        try:
            return SAFE_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load '{module}.{name}' from a network pickle: only tensors, containers and NVIDIA's "
                "persistent-object records are allowed (nothing in the file is executed)", f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"refusing a persistent id {type(pid).__name__} (not a network pickle)")
