"""The wheel (pyproject.toml): what `pip install .` puts outside the checkout, above all the CUDA sources.

The wheel is built once for the module, with pip and the installed setuptools (no build isolation, no index: no
network), from a copy of the source tree: a build in the checkout would write build/ there, and setuptools packs
whatever an earlier build left in build/lib. About 2 s, plus a Python process that imports from the unpacked wheel.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from priors.ops import _build

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("datamodules", "nets", "priors", "safeio", "translate")  # the top-level packages; cli.py is the one module
CSRC_SUFFIXES = (".cu", ".cuh", ".cpp", ".h")
# the source tree as git sees it (.gitignore): no virtualenv, build output, caches or runs
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", "runs",
                                     "wandb", "demo_out", ".gl", "*.so")
PACKAGED_CSRC = PurePosixPath(_build.PACKAGED_CSRC.relative_to(ROOT).as_posix())  # where source_dir() looks first


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed: the wheel cannot be built without build isolation")
    tmp = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, tmp / "src", ignore=NOT_SOURCES)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--wheel-dir", str(tmp / "dist"), str(tmp / "src")], capture_output=True, text=True)
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    (path,) = (tmp / "dist").glob("translate_kit-*.whl")
    print(f"\nbuilt {path.name} in {time.perf_counter() - start:.1f} s")
    return path


def _csrc_files():
    return sorted(p.relative_to(ROOT / "csrc").as_posix() for p in (ROOT / "csrc").rglob("*")
                  if p.suffix in CSRC_SUFFIXES)


def test_wheel_ships_every_csrc_file_where_source_dir_looks(wheel):
    csrc = _csrc_files()
    assert set(_build.SOURCES + _build.HEADERS) <= set(csrc)
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n: zf.read(n) for n in zf.namelist() if PurePosixPath(n).is_relative_to(PACKAGED_CSRC)}
    assert sorted(shipped) == [str(PACKAGED_CSRC / name) for name in csrc]
    for name in csrc:
        assert shipped[str(PACKAGED_CSRC / name)] == (ROOT / "csrc" / name).read_bytes(), name


def test_wheel_holds_the_packages_and_nothing_else(wheel):
    """Every module of the packages (a package missing from pyproject.toml's list fails here), the CUDA sources and
    the metadata; no tests, scripts, configs, benchmarks, docs or top-level csrc/."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
    meta = [n for n in names if n.split("/")[0].endswith(".dist-info")]
    csrc = [n for n in names if PurePosixPath(n).is_relative_to(PACKAGED_CSRC)]
    modules = sorted(set(names) - set(meta) - set(csrc))
    expected = sorted(["cli.py"] + [p.relative_to(ROOT).as_posix() for pkg in PACKAGES
                                    for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts])
    missing, extra = sorted(set(expected) - set(modules)), sorted(set(modules) - set(expected))
    assert not missing, f"not in the wheel (is their package in pyproject.toml's packages?): {missing}"
    assert not extra, f"in the wheel but not a module of {PACKAGES} or cli.py: {extra}"
    assert {n.split("/")[0] for n in meta} == {"translate_kit-0.1.0.dist-info"}
    with zipfile.ZipFile(wheel) as zf:
        assert "translate = translate.cli:main" in zf.read("translate_kit-0.1.0.dist-info/entry_points.txt").decode()


def test_source_dir_of_an_unpacked_wheel_finds_its_csrc(wheel, tmp_path):
    """Imported from the unpacked wheel, as after `pip install .` outside the checkout, the build finds the sources
    beside the package, byte for byte the checkout's (the same cache key)."""
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    code = ("import json; from priors.ops import _build; "
            "print(json.dumps({'module': _build.__file__, 'source_dir': str(_build.source_dir()), "
            "'cache_key': _build.cache_key()}))")
    env = dict(os.environ, PYTHONPATH=str(site), TRANSLATE_OPS_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.splitlines()[-1])
    assert Path(found["module"]).is_relative_to(site)  # not the checkout's copy
    assert found["source_dir"] == str(site / PACKAGED_CSRC)
    assert found["cache_key"] == _build.cache_key()
