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
from safeio.errors import ConfigError, LoadError, UserError
from safeio.files import default_mode, file_on_path, read_json_object, write_atomic
from safeio.loading import SAFE_TORCH_LOAD_GLOBALS, read_safetensors, torch_load_failure
from safeio.pickles import SAFE_PICKLE_GLOBALS, PersistentStub, SafeUnpickler, UnsafePickleError
from safeio.strict import check_fits, strict_load

__all__ = ["ConfigError", "LoadError", "PersistentStub", "SAFE_PICKLE_GLOBALS", "SAFE_TORCH_LOAD_GLOBALS",
           "SafeUnpickler", "UnsafePickleError", "UserError", "check_fits", "default_mode", "file_on_path",
           "read_json_object", "read_safetensors", "strict_load", "torch_load_failure", "write_atomic"]
