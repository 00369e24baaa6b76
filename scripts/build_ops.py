"""`make build-ops`: compile the CUDA ops (csrc/) ahead of time, so that the first CUDA call does not wait for nvcc.

    python scripts/build_ops.py                          # into the cache, for $TORCH_CUDA_ARCH_LIST / this GPU / 9.0
    python scripts/build_ops.py --arch "8.0;8.6;9.0"     # several GPU generations (compute capabilities)
    python scripts/build_ops.py --cache-root /opt/ops    # into /opt/ops/<key>: run with TRANSLATE_OPS_CACHE=/opt/ops
    python scripts/build_ops.py --out build/ops          # exactly there (load with priors.ops._build.load(build_dir))

Works without a GPU (nvcc and ninja are enough). The build is keyed by the sources, flags and torch/CUDA versions;
an existing build that already covers the architectures is reused.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from priors.ops import _build  # noqa: E402


def default_arch() -> str:
    if os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip():
        return os.environ["TORCH_CUDA_ARCH_LIST"]
    if torch.cuda.is_available():
        return "{}.{}".format(*torch.cuda.get_device_capability())
    return _build.DEFAULT_ARCH


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default=None, help="compute capabilities, e.g. '8.0;9.0' or '9.0+PTX' (default: "
                        "$TORCH_CUDA_ARCH_LIST, else this machine's GPU, else " + _build.DEFAULT_ARCH + ")")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cache-root", type=Path, default=None,
                       help=f"cache root to build into (<root>/<key>; default ${_build.CACHE_ENV} or "
                            f"{_build.DEFAULT_CACHE})")
    where.add_argument("--out", type=Path, default=None, help="exact directory to build into")
    parser.add_argument("--verbose", action="store_true", help="show the compiler's output")
    args = parser.parse_args(argv)

    arch = args.arch or default_arch()
    start = time.perf_counter()
    try:
        if args.out is not None:
            build_dir = args.out
        else:
            build_dir = (args.cache_root.expanduser() if args.cache_root else _build.cache_root()) / _build.cache_key()
        print(f"building the CUDA ops ({_build.source_dir()}) for arch {arch} into {build_dir} ...", flush=True)
        so = _build.compile_only(arch, build_dir, verbose=args.verbose)
    except _build.BuildError as e:
        print(f"build-ops: {e}", file=sys.stderr)
        return 1
    meta = _build.read_meta(build_dir)
    took = time.perf_counter() - start
    reused = " (reused an existing build)" if took < 0.5 * (meta.get("build_seconds") or 0) else ""
    print(f"{so}\n  arch {';'.join(meta['arch'])}, cache key {meta['cache_key']}, torch {meta['torch']}, "
          f"CUDA {meta['cuda']}; {took:.1f} s{reused}")
    if args.cache_root is not None:
        print(f"  at run time: export {_build.CACHE_ENV}={args.cache_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
