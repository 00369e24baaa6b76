"""The ground floor: writing files atomically and loading tensors safely. Every package may import it; it imports
none of the project's packages (tests/test_layers.py checks both).

- `write_atomic`, `default_mode`, `file_on_path`, `read_json_object` (files.py): a crash never leaves half a
  file, and a description file is a JSON object or an error naming it;
- `read_safetensors`, `torch_load_failure`, `SAFE_TORCH_LOAD_GLOBALS` (loading.py): tensors without running code;
- `SafeUnpickler`, `PersistentStub`, `UnsafePickleError` (pickles.py): NVIDIA network pickles read as data;
- `strict_load`, `check_fits` (strict.py): every key used, every parameter set, every shape equal, or one error;
- `LoadError` (errors.py): the error type of all of them; `ConfigError` (a config value, naming its key) and their
  base `UserError`: what the command line prints in one line.
"""
# imported on first use: `safeio.errors` and `safeio.files` need no torch, and the inference API's image reading
# (datamodules/io.py) imports `safeio.errors` without pulling torch in through this package
_WHERE = {
    "ConfigError": "errors", "LoadError": "errors", "UserError": "errors",
    "default_mode": "files", "file_on_path": "files", "read_json_object": "files", "write_atomic": "files",
    "SAFE_TORCH_LOAD_GLOBALS": "loading", "read_safetensors": "loading", "torch_load_failure": "loading",
    "SAFE_PICKLE_GLOBALS": "pickles", "PersistentStub": "pickles", "SafeUnpickler": "pickles",
    "UnsafePickleError": "pickles",
    "check_fits": "strict", "strict_load": "strict",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"safeio.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'safeio' has no attribute '{name}'")
