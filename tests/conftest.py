import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

DATA = os.path.join(os.path.dirname(__file__), "data")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def data_dir():
    return DATA


# Test paths that run only when named on the command line, each in a pytest process of its own:
# - tests/kernels/ loads the emulated CUDA kernels (the translate_ops operators built against HIP-CPU), which cannot
#   share a process with the nvcc build that tests/priors/test_build.py loads (`make test-kernels`);
# - tests/translate/test_device_placement.py runs the methods under FakeTensorMode on a simulated CUDA device, which
#   crashed the interpreter (a segfault in torch's meta converter) when it ran after other tests in one process, and
#   never alone (`make test` runs it in a second process). Alone it was killed once by SIGABRT inside torch's
#   FakeTensorMode.cache_clear (CI, 2026-12-07, a loaded machine; 5 other runs passed); `make test` runs it once more
#   when its process dies of a signal.
HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = os.path.join(HERE, "kernels")
ISOLATED = (KERNELS, os.path.join(HERE, "translate", "test_device_placement.py"))


def pytest_ignore_collect(collection_path, config):
    path = str(collection_path)
    if path not in ISOLATED:
        return None
    cwd = str(config.invocation_params.dir)
    named = [os.path.abspath(os.path.join(cwd, str(a).split("::")[0])) for a in config.args]
    return True if not any(a == path or a.startswith(path + os.sep) for a in named) else None
