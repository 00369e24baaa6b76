"""Writing files so that a crash never leaves half of one, with the permissions a user expects."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Type


def default_mode(directory: bool = False) -> int:
    """The permissions a new file (or directory) gets under the current umask; mkstemp's are 0600 and mkdtemp's
    0700, which would hide checkpoints, priors and bundles from the user's group."""
    umask = os.umask(0o022)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def file_on_path(path: str | Path) -> Optional[Path]:
    """The first of `path` and its parents that exists as a file (nothing can be written under it), or None."""
    path = Path(path)
    return next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)


def write_atomic(path: str | Path, write: Callable[[str], None], sync: bool = True) -> None:
    """Call write(tmp) on a temporary file beside `path`, fsync it, then rename it over `path`: a crash or an
    error never leaves half a file, and an existing file stays whole until the new one is complete. The result
    has a new file's usual permissions (or the replaced file's), not the temporary file's private 0600.
    sync=False skips the fsync (many small files, e.g. translated images: whole after a crash of the process, not
    necessarily after a power cut)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        if sync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else default_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_json_object(path: str | Path, error: Type[Exception] = ValueError) -> Dict[str, Any]:
    """The JSON object in `path` (a bundle's or prior's description); invalid JSON or another JSON value is an
    `error` naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
