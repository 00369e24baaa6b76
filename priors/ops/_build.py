"""Builds the compiled ops (csrc/) with torch.utils.cpp_extension: lazily on first CUDA use, or ahead of time.

The C++/CUDA sources are found by `source_dir()`: priors/ops/csrc/ beside this module in an installed wheel
(pyproject.toml maps the checkout's top-level csrc/ there), else the checkout's csrc/ (a run from the source tree
or an editable install).

A build goes into a directory keyed by a hash of the sources, the build flags and the torch / CUDA versions
(`~/.cache/translate_kit/ops/<key>`, root overridable with $TRANSLATE_OPS_CACHE), under a file lock so that
concurrent processes build once. The compiler runs in a child process: the calling process only loads the finished
library, and `compile_only` (the ahead-of-time build, `scripts/build_ops.py`) never loads it. Each build directory
records the GPU architectures it was compiled for (`meta.json`); loading on a device they do not cover rebuilds
with that device's architecture added.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch

EXT_NAME = "translate_ops"  # the library file's name and the operators' namespace (torch.ops.translate_ops)
PACKAGED_CSRC = Path(__file__).resolve().parent / "csrc"  # in a wheel: priors/ops/csrc/ (pyproject.toml)
CHECKOUT_CSRC = Path(__file__).resolve().parents[2] / "csrc"  # in the source tree: the top-level csrc/
SOURCES = ("ops.cpp", "upfirdn2d.cu", "bias_act.cu", "filtered_lrelu.cu")  # compiled
HEADERS = ("common.h", "upfirdn2d.h", "bias_act.h", "filtered_lrelu.h")  # hashed with the sources
CXX_FLAGS = ("-O3",)
CUDA_FLAGS = ("-O3",)
CACHE_ENV = "TRANSLATE_OPS_CACHE"
DEFAULT_CACHE = Path("~/.cache/translate_kit/ops")
DEFAULT_CUDA_HOME = Path("/usr/local/cuda")
DEFAULT_ARCH = "9.0"  # compute capability to compile for when there is no device to ask (H100)
OLDEST_ARCH_NVCC13 = (7, 5)  # nvcc 13 dropped compute capabilities below 7.5
META = "meta.json"
BUILD_LOG = "build.log"
_LOG_TAIL_LINES = 25  # lines of the compiler's output quoted in a BuildError

_ARCH_RE = re.compile(r"^(\d+)\.(\d+)(\+PTX)?$")

# The child process: torch's JIT builder with the arguments given as JSON. It also loads the library, which checks
# that it links; in the parent nothing is loaded until `load` says so.
_CHILD = """
import json, sys
import torch.utils.cpp_extension as ext
ext.load(is_python_module=False, **json.loads(sys.argv[1]))
"""

# The library this process has loaded (a process can load the operators' namespace only once).
_loaded: Optional[Dict] = None


class BuildError(RuntimeError):
    """The compiled ops could not be built or loaded; the message says why."""


def find_cuda_home() -> Optional[Path]:
    """The CUDA toolkit: $CUDA_HOME / $CUDA_PATH, else /usr/local/cuda, else two levels above `nvcc` on the PATH.

    /usr/local/cuda comes before the PATH because torch's own guess from the PATH finds wrappers such as
    /usr/local/bin/nvcc and picks /usr/local, which has no CUDA headers.
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return Path(os.environ[var])
    if (DEFAULT_CUDA_HOME / "bin" / "nvcc").exists():
        return DEFAULT_CUDA_HOME
    nvcc = shutil.which("nvcc")
    if nvcc is not None:
        root = Path(nvcc).resolve().parents[1]
        if (root / "include" / "cuda_runtime.h").exists():
            return root
    return None


def _ninja() -> Optional[str]:
    return shutil.which("ninja") or shutil.which("ninja", path=str(Path(sys.executable).parent))


def toolchain_problem() -> Optional[str]:
    """Why the ops cannot be compiled on this machine, or None when the toolchain is complete."""
    if torch.version.cuda is None:
        return "this torch build has no CUDA support (torch.version.cuda is None)"
    home = find_cuda_home()
    if home is None:
        return "nvcc (the CUDA compiler) was not found: install the CUDA toolkit or set CUDA_HOME"
    if not (home / "bin" / "nvcc").exists():
        return f"CUDA_HOME={home} has no bin/nvcc"
    if _ninja() is None:
        return "ninja was not found (torch's extension builder needs it): pip install ninja"
    return None


def nvcc_version() -> Optional[Tuple[int, int]]:
    """(major, minor) of the toolkit's nvcc, or None when it cannot be run."""
    home = find_cuda_home()
    if home is None:
        return None
    try:
        out = subprocess.run([str(home / "bin" / "nvcc"), "--version"], capture_output=True, text=True,
                             timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_arch_list(arch: str) -> List[str]:
    """ "8.0;9.0" (also spaces or commas; "+PTX" suffixes) -> ["8.0", "9.0"], checked against nvcc's range."""
    items = [a for a in re.split(r"[;,\s]+", arch.strip()) if a]
    if not items:
        raise BuildError(f"arch: expected compute capabilities such as '8.0;9.0', got {arch!r}")
    bad = [a for a in items if not _ARCH_RE.match(a)]
    if bad:
        raise BuildError(f"arch: expected compute capabilities such as '8.0;9.0' or '9.0+PTX', got {bad} in {arch!r}")
    version = nvcc_version()
    if version is not None and version[0] >= 13:
        old = [a for a in items if _arch_tuple(a) < OLDEST_ARCH_NVCC13]
        if old:
            raise BuildError(f"arch: nvcc {version[0]}.{version[1]} compiles for compute capability "
                             f"{OLDEST_ARCH_NVCC13[0]}.{OLDEST_ARCH_NVCC13[1]} and newer, got {old}")
    return sorted(set(items), key=lambda a: (_arch_tuple(a), a))


def _arch_tuple(arch: str) -> Tuple[int, int]:
    m = _ARCH_RE.match(arch)
    return int(m.group(1)), int(m.group(2))


def arch_covers(archs: Sequence[str], capability: Tuple[int, int]) -> bool:
    """Whether code built for `archs` runs on a device of this compute capability: machine code runs on later minor
    versions of the same major one, PTX ("+PTX") on any later device."""
    for a in archs:
        major, minor = _arch_tuple(a)
        if (major == capability[0] and minor <= capability[1]) or (a.endswith("+PTX") and (major, minor) <= capability):
            return True
    return False


def source_dir() -> Path:
    """The directory of the C++/CUDA sources: PACKAGED_CSRC if it exists (an installed wheel), else CHECKOUT_CSRC
    (the source tree, also what an editable install reads). Raises BuildError naming both when neither exists."""
    for path in (PACKAGED_CSRC, CHECKOUT_CSRC):
        if path.is_dir():
            return path
    raise BuildError(f"the CUDA sources are missing: expected {PACKAGED_CSRC} (an installed package) or "
                     f"{CHECKOUT_CSRC} (a source checkout)")


def cache_key(csrc: Optional[Path] = None) -> str:
    """Hash of the sources (in csrc, default source_dir()), the build flags and the torch / CUDA versions: a change
    to any of them gives a new build directory."""
    csrc = Path(csrc) if csrc is not None else source_dir()
    h = hashlib.sha256()
    for name in SOURCES + HEADERS:
        path = csrc / name
        if not path.is_file():
            raise BuildError(f"the CUDA sources are missing: expected {path}")
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "cxx": CXX_FLAGS,
                         "nvcc": CUDA_FLAGS}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def default_build_dir() -> Path:
    return cache_root() / cache_key()


def library_path(build_dir: Path) -> Path:
    return Path(build_dir) / f"{EXT_NAME}.so"


def read_meta(build_dir: Path) -> Optional[Dict]:
    """The record of a finished build in build_dir, or None if there is none (or it is unreadable)."""
    path = Path(build_dir) / META
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("arch"), list) else None


@contextlib.contextmanager
def _locked(build_dir: Path) -> Iterator[None]:
    """An exclusive advisory lock on build_dir, released by the OS if the holder dies."""
    import fcntl  # POSIX; the CUDA build is supported on Linux

    with open(Path(build_dir) / "build.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_compiler(build_dir: Path, archs: List[str], verbose: bool) -> float:
    """Compiles the sources into build_dir in a child process; returns the seconds it took."""
    problem = toolchain_problem()
    if problem is not None:
        raise BuildError(problem)
    env = dict(os.environ)
    env["CUDA_HOME"] = str(find_cuda_home())
    env["TORCH_CUDA_ARCH_LIST"] = ";".join(archs)  # torch's builder fails without it when no GPU is visible
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # a venv's ninja
    csrc = source_dir()
    spec = {"name": EXT_NAME, "sources": [str(csrc / s) for s in SOURCES], "extra_include_paths": [str(csrc)],
            "extra_cflags": list(CXX_FLAGS), "extra_cuda_cflags": list(CUDA_FLAGS),
            "build_directory": str(build_dir), "verbose": verbose}
    log = Path(build_dir) / BUILD_LOG
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(spec)], env=env, cwd=str(build_dir),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            fh.write(line)
            if verbose:
                sys.stderr.write(line)
        rc = proc.wait()
    seconds = time.perf_counter() - start
    if rc != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-_LOG_TAIL_LINES:])
        raise BuildError(f"building the CUDA ops for arch {';'.join(archs)} failed (exit {rc}); full log: {log}\n"
                         f"{tail}")
    if not library_path(build_dir).exists():
        raise BuildError(f"the build finished but {library_path(build_dir)} is missing; log: {log}")
    return seconds


def _usable(build_dir: Path, key: str, archs: Sequence[str], capability: Optional[Tuple[int, int]]) -> Optional[Dict]:
    """The meta of a finished build of these sources in build_dir that covers `archs` and `capability`, or None."""
    meta = read_meta(build_dir)
    if meta is None or meta.get("cache_key") != key or not library_path(build_dir).exists():
        return None
    if not set(archs) <= set(meta["arch"]) or (capability is not None and not arch_covers(meta["arch"], capability)):
        return None
    return meta


def _ensure_built(build_dir: Path, archs: Sequence[str], capability: Optional[Tuple[int, int]],
                  verbose: bool) -> Tuple[Dict, bool]:
    """Builds into build_dir unless a build of the current sources covering `archs` (and a device of
    `capability`) is there. Returns (meta, built_now)."""
    build_dir = Path(build_dir)
    key = cache_key()
    meta = _usable(build_dir, key, archs, capability)
    if meta is not None:  # no lock needed to use a finished build (the directory may be read-only)
        return meta, False
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        with _locked(build_dir):
            meta = _usable(build_dir, key, archs, capability)  # another process may have built it meanwhile
            if meta is not None:
                return meta, False
            previous = read_meta(build_dir)
            built = previous["arch"] if previous and previous.get("cache_key") == key else []
            wanted = set(built) | set(archs)  # an arch-extending rebuild keeps what was there
            if capability is not None and not arch_covers(sorted(wanted), capability):
                wanted.add(f"{capability[0]}.{capability[1]}")
            all_archs = parse_arch_list(";".join(wanted or [DEFAULT_ARCH]))
            seconds = _run_compiler(build_dir, all_archs, verbose)
            meta = {"cache_key": key, "arch": all_archs, "torch": torch.__version__, "cuda": torch.version.cuda,
                    "build_seconds": round(seconds, 1), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
            (build_dir / META).write_text(json.dumps(meta, indent=2) + "\n")
            return meta, True
    except OSError as e:
        raise BuildError(f"cannot build the CUDA ops in {build_dir}: {e}") from e


def compile_only(arch: str = DEFAULT_ARCH, build_dir: Optional[os.PathLike] = None, verbose: bool = False) -> Path:
    """Builds the library for the compute capabilities in `arch` ("8.0;9.0") into build_dir (default: the cache
    directory of the current sources) without loading it here; returns the library's path. Reuses a build that
    already covers `arch`."""
    build_dir = Path(build_dir) if build_dir is not None else default_build_dir()
    _ensure_built(build_dir, parse_arch_list(arch), None, verbose)
    return library_path(build_dir)


def load(build_dir: Optional[os.PathLike] = None, device: Optional[torch.device] = None,
         verbose: bool = False) -> Dict:
    """Builds if needed, then loads the library into this process (once) and returns what was loaded:
    {"extension", "cache_key", "arch", "built_now", "build_seconds"}.

    The architectures come from $TORCH_CUDA_ARCH_LIST if set, plus the device's (default: the current CUDA device,
    if any).
    """
    global _loaded
    on_cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    capability = torch.cuda.get_device_capability(device) if on_cuda else None
    if _loaded is not None:
        if capability is not None and not arch_covers(_loaded["arch"], capability):
            raise BuildError(f"the loaded ops library {_loaded['extension']} was built for {_loaded['arch']}, not for "
                             f"this device (compute capability {capability[0]}.{capability[1]}); it cannot be "
                             "replaced in a running process")
        return _loaded
    env_arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    archs = parse_arch_list(env_arch) if env_arch else []
    build_dir = Path(build_dir) if build_dir is not None else default_build_dir()
    meta, built_now = _ensure_built(build_dir, archs, capability, verbose)
    so = library_path(build_dir)
    try:
        torch.ops.load_library(str(so))
    except (OSError, RuntimeError) as e:  # unloadable, or another build already registered the operators
        raise BuildError(f"the ops library {so} was built but does not load: {e}") from e
    _loaded = {"extension": str(so), "cache_key": meta["cache_key"], "arch": meta["arch"], "built_now": built_now,
               "build_seconds": meta.get("build_seconds")}
    return _loaded


def loaded() -> Optional[Dict]:
    """What `load` loaded into this process, or None."""
    return _loaded
