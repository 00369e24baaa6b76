import os

import pytest
from PIL import Image

from priors.generate import parse_seeds
from translate.cli import main

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "sg2")


def test_parse_seeds():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(ValueError, match="backwards"):
        parse_seeds("5-2")


def test_convert_then_generate_grids(tmp_path, capsys):
    assert main(["convert-prior", os.path.join(DATA, "nvlabs_tiny_network.pkl"), str(tmp_path / "prior")]) == 0
    assert main(["generate", "--prior", str(tmp_path / "prior"), "--seeds", "0-3", "--trunc", "0.7",
                 "--out", str(tmp_path / "grid.png")]) == 0
    assert Image.open(tmp_path / "grid.png").size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)
    assert main(["generate", "--prior", os.path.join(DATA, "rosinality_tiny.pt"), "--seeds", "0-1",
                 "--mix-seeds", "10-12", "--mix-layers", "fine", "--out", str(tmp_path / "mix.png")]) == 0
    assert Image.open(tmp_path / "mix.png").size == (4 * 32 + 5 * 2, 2 * 32 + 3 * 2)
    assert main(["generate", "--prior", str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")]) == 2
    assert "missing" in capsys.readouterr().err
