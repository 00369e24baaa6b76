"""Plants bugs in copies of the CUDA kernels (csrc/) and checks that the emulated kernel tests catch each one.

For the unmodified sources and then for each mutant below, a copy of csrc/ is made (the mutant applied to it), the
emulated library is built from the copy (tests/kernels/emulate.py, via $TRANSLATE_EMU_CSRC) and
tests/kernels/test_emulated_ops.py runs against it in its own pytest process (-x: a mutant stops at its first
failing test). Prints a Markdown table: the unmodified sources must pass, every mutant must fail. Run by hand, not
in CI (a build per mutant: about 2 minutes each on 2 cores):

    .venv/bin/python scripts/mutate_kernels.py                 # all of them
    .venv/bin/python scripts/mutate_kernels.py --only grid_cap # one (and the unmodified run)

Exit status 0 when the unmodified sources pass and every mutant fails, else 1.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, NamedTuple, Optional

ROOT = Path(__file__).resolve().parents[1]
TESTS = "tests/kernels/test_emulated_ops.py"


class Mutant(NamedTuple):
    name: str
    file: str
    old: str  # must occur exactly once in the file
    new: str
    what: str


MUTANTS = [
    Mutant("no_sync_between_planes", "upfirdn2d.cu",
           "    __syncthreads();  // the filter is in place", "    // the filter is in place",
           "upfirdn2d: the `__syncthreads()` at the top of the plane loop removed"),
    Mutant("no_sync_after_load", "upfirdn2d.cu",
           "    upfirdn2d_load_tile(p, x, s_tile, plane, o, tid);\n    __syncthreads();\n",
           "    upfirdn2d_load_tile(p, x, s_tile, plane, o, tid);\n",
           "upfirdn2d: the `__syncthreads()` between loading a plane's window and computing from it removed"),
    Mutant("shared_one_short", "upfirdn2d.cu",
           "static_cast<size_t>(upfirdn2d_shared_bytes<A>(p))",
           "static_cast<size_t>(upfirdn2d_shared_bytes<A>(p) - sizeof(A))",
           "upfirdn2d: dynamic shared memory one element short"),
    Mutant("grid_cap_removed", "upfirdn2d.cu",
           "std::min<int64_t>(p.planes, 65535)", "p.planes",
           "upfirdn2d: the 65535 cap on the grid's rows removed"),
    Mutant("plane_skipped", "upfirdn2d.cu",
           "plane < p.planes; plane += gridDim.y", "plane < p.planes - 1; plane += gridDim.y",
           "upfirdn2d: the last (n, c) plane skipped"),
    Mutant("launch_bounds_low", "upfirdn2d.cu",
           "__launch_bounds__(kThreads)", "__launch_bounds__(kThreads / 2)",
           "upfirdn2d: `__launch_bounds__` below the block's thread count"),
    Mutant("stride_doubled", "bias_act.cu",
           "i < n; i += step", "i < n; i += 2 * step",
           "bias_act: the grid-stride loop's stride doubled"),
    Mutant("plane_stride_doubled", "upfirdn2d.cu",
           "plane += gridDim.y", "plane += 2 * gridDim.y",
           "upfirdn2d: the plane loop's stride doubled"),
]


def apply(mutant: Mutant, csrc: Path) -> None:
    path = csrc / mutant.file
    text = path.read_text()
    if text.count(mutant.old) != 1:
        raise SystemExit(f"mutant {mutant.name}: expected {mutant.old!r} once in {mutant.file}, found it "
                         f"{text.count(mutant.old)} times; update MUTANTS in {Path(__file__).name}")
    path.write_text(text.replace(mutant.old, mutant.new))


def run(mutant: Optional[Mutant], work: Path, python: str) -> dict:
    csrc = work / (mutant.name if mutant else "unmodified") / "csrc"
    shutil.copytree(ROOT / "csrc", csrc)
    if mutant is not None:
        apply(mutant, csrc)
    env = dict(os.environ, TRANSLATE_EMU_CSRC=str(csrc), MAX_JOBS=os.environ.get("MAX_JOBS", "1"))
    if mutant is not None:  # mutants' builds go into the scratch directory, not the user's cache
        env["TRANSLATE_EMU_CACHE"] = str(work / "cache")
    cmd = [python, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", TESTS] + (["-x"] if mutant else [])
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    (work / f"{mutant.name if mutant else 'unmodified'}.log").write_text(out)
    return {"rc": proc.returncode, "seconds": seconds, **summarize(out)}


def summarize(log: str) -> dict:
    """The first failing test of a pytest log, the first line of its error, and the run's counts."""
    lines = log.splitlines()
    failed = [ln.split(" - ")[0] for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    errors = [ln[1:].strip() for ln in lines if ln.startswith("E ") and ln[1:].strip()]
    counts = re.findall(r"(\d+ (?:passed|failed|error|errors))", lines[-1] if lines else "")
    first = failed[0] if failed else ""
    if first and errors:
        first += f": {errors[0]}"
    return {"first": first, "counts": ", ".join(counts)}


def _cell(text: str, width: int = 220) -> str:
    text = text.replace("|", "\\|").replace(str(ROOT) + os.sep, "")
    text = re.sub(r"^(FAILED|ERROR) tests/kernels/test_emulated_ops\.py::", "", text)
    return text if len(text) <= width else text[:width - 3] + "..."


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[m.name for m in MUTANTS],
                        help="run these mutants only")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (copies, builds, logs)")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    work = Path(tempfile.mkdtemp(prefix="mutate_kernels_"))
    rows, ok = [], True
    try:
        for mutant in [None] + mutants:
            label = mutant.name if mutant else "unmodified"
            print(f"{label} ...", file=sys.stderr, flush=True)
            r = run(mutant, work, sys.executable)
            caught = r["rc"] != 0
            good = caught if mutant else r["rc"] == 0
            ok &= good
            verdict = ("caught" if caught else "MISSED") if mutant else ("pass" if r["rc"] == 0 else "FAILED")
            detail = _cell(r["first"]) if r["first"] else r["counts"]
            rows.append(f"| {label} | {mutant.what if mutant else 'csrc/ as committed'} | {verdict} | {detail} | "
                        f"{r['seconds']:.0f} |")
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"scratch directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("| mutant | change | result | first failing test (or the run's counts) | s (build + tests) |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
