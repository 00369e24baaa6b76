import io
import os

import pytest
import torch
from torch.torch_version import TorchVersion

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "data", "junyanz")


def load_golden(name):
    """A golden file of the reference pix2pix/CycleGAN code (its config records the torch version it ran under)."""
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(os.path.join(GOLDEN, name), weights_only=True)


@pytest.fixture
def golden():
    return load_golden


def _export_round_trip(net, x):
    """torch.export the (eval-mode) net, save and load the program, and return the loaded program's output."""
    program = torch.export.export(net, (x,))
    buf = io.BytesIO()
    torch.export.save(program, buf)
    buf.seek(0)
    return torch.export.load(buf).module()(x)


@pytest.fixture
def export_round_trip():
    return _export_round_trip
