import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import emulate  # noqa: E402


@pytest.fixture(scope="session")
def emulated():
    """The emulated translate_ops library, built (or taken from the cache) and loaded once per session."""
    return emulate.load()
