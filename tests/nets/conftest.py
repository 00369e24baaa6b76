import os

import pytest
import torch
from torch.torch_version import TorchVersion

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "data", "junyanz")


def load_golden(name):
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(os.path.join(GOLDEN, name), weights_only=True)


@pytest.fixture
def golden():
    return load_golden
