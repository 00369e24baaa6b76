"""The CUDA kernels of csrc/, compiled for the CPU against HIP-CPU and loaded as the translate_ops operators.

Every csrc/*.cu and csrc/*.cpp is compiled, unmodified apart from a rewrite of copies made at build time:

- `kernel<<<grid, block, shared, stream>>>(args);` becomes a call of the launcher in shim/tk_emu_kernel.h, which
  checks the launch against an sm_90 GPU's limits and runs the blocks one after another on this thread, the threads
  of a block as HIP-CPU's fibers (they switch at __syncthreads);
- `extern __shared__ T name[];` becomes a pointer to the block's dynamic shared memory, which the launcher fills
  with NaN at each block's start and fences with guard zones;
- `__launch_bounds__(n)` becomes a check, at the top of the kernel's body, that the block has at most n threads;
- in the operator layer (ops.cpp) the CUDA registrations (`TORCH_LIBRARY_IMPL(ns, CUDA, m)`) take the CPU dispatch
  key and the CPU ones are dropped, so that CPU tensors reach the CUDA entry points and their kernels.

The CUDA runtime names and the c10/cuda headers the sources include are stand-ins in shim/. The library registers
the same operator namespace as the nvcc build, so a process loads one or the other: the tests that use this one run
in their own pytest process (`make test-kernels`). A new .cu file in csrc/ is picked up as it is; a new operator
needs only its tests (tests/kernels/test_emulated_ops.py).

The build is cached in a directory keyed by a hash of the rewritten sources, the shim, the flags and the torch
version (~/.cache/translate_kit/emulated_ops/<key>, root overridable with $TRANSLATE_EMU_CACHE); $TRANSLATE_EMU_CSRC
points the build at another copy of csrc/ (scripts/mutate_kernels.py does).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHIM = HERE / "shim"
HIP_CPU = HERE / "hip_cpu"
CSRC_ENV = "TRANSLATE_EMU_CSRC"
CACHE_ENV = "TRANSLATE_EMU_CACHE"
DEFAULT_CACHE = Path("~/.cache/translate_kit/emulated_ops")
LIB_NAME = "translate_ops_emu"  # the library file; the operators keep their namespace (TORCH_LIBRARY in ops.cpp)
# C++20 for torch's headers; -O1 builds in about a minute on 2 cores and runs as fast as -O2 here; no TBB: the
# standard library's parallel algorithms (HIP-CPU's loop over blocks) run serially, so the blocks run in order.
CFLAGS = ("-std=c++20", "-O1", "-D_GLIBCXX_USE_TBB_PAR_BACKEND=0", "-Wno-unused-variable", "-Wno-attributes")
KERNEL_HEADER = "tk_emu_kernel.h"
SUFFIXES = (".cu", ".cpp", ".h", ".cuh", ".hpp")


class RewriteError(ValueError):
    """A construct of the CUDA sources that the rewrite does not understand; the message names the file and line."""


# ----------------------------------------------------------------------------------------------- the rewrite

def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _match_close(text: str, pos: int, where: str) -> int:
    """The index just past the bracket that closes the one at text[pos] ((, [ or {), skipping nested ones."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[text[pos]]]
    i = pos + 1
    while i < len(text):
        c = text[i]
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if c != stack.pop():
                break
            if not stack:
                return i + 1
        i += 1
    raise RewriteError(f"{where}:{_line(text, pos)}: unbalanced '{text[pos]}'")


def _split_top(text: str) -> List[str]:
    """text split at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


_NAME_CHARS = re.compile(r"[\w:<>,\s]")


def rewrite_launches(text: str, where: str = "<source>") -> str:
    """`k<<<grid, block[, shared[, stream]]>>>(args);` -> `::tk_emu::launch("k", grid, block, shared, stream,
    [](auto&&... a) { k(a...); }, std::make_tuple(args));` (the same number of lines)."""
    out, pos = [], 0
    while True:
        start = text.find("<<<", pos)
        if start < 0:
            out.append(text[pos:])
            return "".join(out)
        name_start = start
        while name_start > pos and _NAME_CHARS.match(text[name_start - 1]):
            name_start -= 1
        raw_name = text[name_start:start]
        lead = raw_name[:len(raw_name) - len(raw_name.lstrip())]
        name = re.sub(r"^(else|return)\b\s*", "", raw_name.strip())
        if not re.fullmatch(r"[A-Za-z_][\w:]*\s*(<[\w:<>,\s]*>)?", name):
            raise RewriteError(f"{where}:{_line(text, start)}: cannot read the kernel name of this launch "
                               f"({raw_name.strip()!r})")
        keyword = raw_name.strip()[:len(raw_name.strip()) - len(name)]
        end_cfg = text.find(">>>", start + 3)
        if end_cfg < 0:
            raise RewriteError(f"{where}:{_line(text, start)}: '<<<' without '>>>'")
        config = _split_top(text[start + 3:end_cfg])
        if not 2 <= len(config) <= 4 or not all(config):
            raise RewriteError(f"{where}:{_line(text, start)}: expected <<<grid, block[, shared[, stream]]>>>, got "
                               f"<<<{text[start + 3:end_cfg]}>>>")
        config += ["0", "nullptr"][len(config) - 2:]
        paren = end_cfg + 3
        while paren < len(text) and text[paren].isspace():
            paren += 1
        if paren >= len(text) or text[paren] != "(":
            raise RewriteError(f"{where}:{_line(text, start)}: expected the kernel's arguments after '>>>'")
        close = _match_close(text, paren, where)
        args = text[paren + 1:close - 1]
        original = text[name_start:close]
        plain = re.sub(r"\s+", "", name.split("<")[0])
        call = (f"{lead}{keyword}::tk_emu::launch(\"{plain}\", {config[0]}, {config[1]}, {config[2]}, {config[3]}, "
                f"[](auto&&... tk_emu_a) {{ {name}(tk_emu_a...); }}, std::make_tuple({args.strip()}))")
        call = re.sub(r"\s*\n\s*", " ", call[len(lead):])
        out.append(text[pos:name_start] + lead + call + "\n" * (original.count("\n") - lead.count("\n")))
        pos = close


_SHARED = re.compile(r"extern\s+__shared__\s+(?P<type>[^;\[]*?)\s*(?P<name>\w+)\s*\[\s*\]\s*;")


def rewrite_shared(text: str) -> str:
    """`extern __shared__ [__align__(n)] T name[];` -> `T* const name = (T*) the block's dynamic shared memory;`."""
    def sub(m: re.Match) -> str:
        ctype = re.sub(r"__align__\s*\(\s*\w+\s*\)", "", m.group("type")).strip()
        ctype = re.sub(r"\s+", " ", ctype)
        return f"{ctype}* const {m.group('name')} = reinterpret_cast<{ctype}*>(::tk_emu::dynamic_shared());"
    return _SHARED.sub(sub, text)


def rewrite_launch_bounds(text: str, where: str = "<source>") -> str:
    """`__launch_bounds__(n[, m]) ... kernel(params) {` -> `... kernel(params) { if (!within(n)) return;` (a
    declaration without a body just loses the attribute)."""
    out, pos = [], 0
    for m in re.finditer(r"__launch_bounds__\s*\(", text):
        if m.start() < pos:
            continue
        close = _match_close(text, m.end() - 1, where)
        bounds = text[m.end():close - 1].strip()
        name = re.compile(r"(\w+)\s*\(").search(text, close)
        if name is None:
            raise RewriteError(f"{where}:{_line(text, m.start())}: no function after __launch_bounds__")
        params_end = _match_close(text, name.end() - 1, where)
        brace = params_end
        while brace < len(text) and text[brace].isspace():
            brace += 1
        out.append(text[pos:m.start()])
        if brace < len(text) and text[brace] == "{":
            out.append(text[close:brace + 1])
            out.append(f" if (!::tk_emu::within_launch_bounds(\"{name.group(1)}\", {bounds})) return;")
            pos = brace + 1
        else:
            pos = close
    out.append(text[pos:])
    return "".join(out)


def rewrite_registrations(text: str, where: str = "ops.cpp") -> str:
    """The CUDA kernels registered for the CPU dispatch key (their CPU registrations dropped)."""
    cpu = re.compile(r"TORCH_LIBRARY_IMPL\(\s*(\w+)\s*,\s*CPU\s*,\s*\w+\s*\)\s*\{")
    while (m := cpu.search(text)) is not None:
        end = _match_close(text, m.end() - 1, where)
        text = text[:m.start()] + "\n" * text.count("\n", m.start(), end) + text[end:]
    text, n = re.subn(r"TORCH_LIBRARY_IMPL\(\s*(\w+)\s*,\s*CUDA\s*,", r"TORCH_LIBRARY_IMPL(\1, CPU,", text)
    return text


def rewrite(text: str, where: str, kernel_unit: bool) -> str:
    """All of the above; a kernel translation unit (.cu) starts with the emulator's header."""
    text = rewrite_registrations(rewrite_launch_bounds(rewrite_shared(rewrite_launches(text, where)), where), where)
    if kernel_unit:
        text = f'#include "{KERNEL_HEADER}"\n#line 1 "{Path(where).name}"\n' + text
    return text


def csrc_dir() -> Path:
    return Path(os.environ.get(CSRC_ENV) or ROOT / "csrc").resolve()


def rewritten(csrc: Path) -> Dict[str, str]:
    """The rewritten copies of csrc's sources and headers, by file name (each .cu as .cu.cpp)."""
    files = sorted(p for p in csrc.iterdir() if p.suffix in SUFFIXES and p.is_file())
    if not any(p.suffix == ".cu" for p in files):
        raise RewriteError(f"no .cu files in {csrc}")
    return {(p.name + ".cpp" if p.suffix == ".cu" else p.name): rewrite(p.read_text(), str(p), p.suffix == ".cu")
            for p in files}


def prepare(csrc: Path, out: Path) -> List[Path]:
    """Writes rewritten(csrc) into out; returns the files to compile."""
    out.mkdir(parents=True, exist_ok=True)
    sources = []
    for name, text in rewritten(csrc).items():
        (out / name).write_text(text)
        if name.endswith(".cpp"):
            sources.append(out / name)
    return sources


# ------------------------------------------------------------------------------------------------- the build

def build_key(csrc: Path) -> str:
    """Hash of the rewritten sources, the shim, the flags and the torch version."""
    h = hashlib.sha256()
    files = sorted(rewritten(csrc).items())
    files += [(str(p.relative_to(SHIM)), p.read_text()) for p in sorted(SHIM.rglob("*")) if p.is_file()]
    for name, text in files:
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    h.update(json.dumps({"torch": torch.__version__, "cflags": CFLAGS}).encode())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(directory / "build.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_CHILD = """
import json, sys
import torch.utils.cpp_extension as ext
ext.load(is_python_module=False, **json.loads(sys.argv[1]))
"""


def build(csrc: Optional[Path] = None, verbose: bool = False) -> Tuple[Path, float]:
    """Builds the emulated library of csrc (default csrc_dir()) unless the cache has it; returns (library, seconds
    spent building, 0 when cached). Raises RuntimeError with the compiler's last lines when the build fails."""
    csrc = Path(csrc) if csrc is not None else csrc_dir()
    build_dir = cache_root() / build_key(csrc)
    so = build_dir / f"{LIB_NAME}.so"
    if so.is_file():
        return so, 0.0
    build_dir.mkdir(parents=True, exist_ok=True)
    with _locked(build_dir):
        if so.is_file():
            return so, 0.0
        sources = prepare(csrc, build_dir / "src")
        spec = {"name": LIB_NAME, "sources": [str(s) for s in sources], "with_cuda": False,
                "extra_include_paths": [str(SHIM), str(HIP_CPU / "include"), str(build_dir / "src")],
                "extra_cflags": list(CFLAGS), "build_directory": str(build_dir), "verbose": verbose}
        env = dict(os.environ, MAX_JOBS=os.environ.get("MAX_JOBS", "1"))
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # a venv's ninja
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], env=env, cwd=str(build_dir),
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
        (build_dir / "build.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0 or not so.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            raise RuntimeError(f"building the emulated kernels of {csrc} failed (exit {proc.returncode}); log: "
                               f"{build_dir / 'build.log'}\n{tail}")
        return so, seconds


def load(csrc: Optional[Path] = None) -> Path:
    """Builds (if needed) and loads the emulated library into this process, with the operators' Python side (fake
    implementations, autograd formulas). A process can hold one translate_ops library: this or the nvcc build."""
    so, _ = build(csrc)
    if not hasattr(torch.ops.translate_ops, "bias_act_grad"):
        torch.ops.load_library(str(so))
    from priors.ops import _backend

    _backend._register_python_side()
    return so


if __name__ == "__main__":  # python tests/kernels/emulate.py: build (or find) the library and say where it is
    path, took = build(verbose="-v" in sys.argv)
    print(f"{path} ({'built in %.1f s' % took if took else 'cached'})")
