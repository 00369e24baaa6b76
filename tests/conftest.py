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


# tests/kernels/ loads the emulated CUDA kernels (the translate_ops operators built against HIP-CPU), which cannot
# share a process with the nvcc build that tests/priors/test_build.py loads: it runs only when named on the command
# line (`make test-kernels`: pytest tests/kernels).
KERNELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")


def pytest_ignore_collect(collection_path, config):
    if str(collection_path) != KERNELS:
        return None
    cwd = str(config.invocation_params.dir)
    named = [os.path.abspath(os.path.join(cwd, str(a).split("::")[0])) for a in config.args]
    return True if not any(a == KERNELS or a.startswith(KERNELS + os.sep) for a in named) else None
