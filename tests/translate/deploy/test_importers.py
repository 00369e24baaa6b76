"""`cli.py import --from junyanz`: a reference generator file becomes a bundle that reproduces the reference."""
import os

import torch
from torch.torch_version import TorchVersion

from translate.cli import main
from translate.deploy.inference import load_translator

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "..", "data", "junyanz")


def golden(name):
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(os.path.join(GOLDEN, name), weights_only=True)


def test_import_resnet_generator_matches_reference(tmp_path):
    g = golden("resnet6_instance_ngf8.pt")
    torch.save({f"module.{k}": v for k, v in g["state_dict"].items()}, tmp_path / "latest_net_G.pth")
    out = tmp_path / "bundle"
    assert main(["import", "--from", "junyanz", "--weights", str(tmp_path / "latest_net_G.pth"), "--out", str(out),
                 "--size", "64"]) == 0
    for backend in ("eager", "onnx"):
        tr = load_translator(out, backend=backend)
        torch.testing.assert_close(tr.translate_batch(g["input"]), g["output"], atol=1e-4, rtol=0)


def test_import_unet_eval_mode(tmp_path, capsys):
    g = golden("unet128_batch_ngf8.pt")
    torch.save(g["state_dict"], tmp_path / "latest_net_G.pth")
    out = tmp_path / "bundle"
    assert main(["import", "--from", "junyanz", "--weights", str(tmp_path / "latest_net_G.pth"), "--out", str(out),
                 "--norm-stats", "running", "--size", "128"]) == 0
    tr = load_translator(out)
    torch.testing.assert_close(tr.translate_batch(g["input"]), g["output"], atol=1e-5, rtol=0)
    assert main(["import", "--from", "junyanz", "--weights", str(tmp_path / "missing.pth"), "--out",
                 str(tmp_path / "b2")]) == 2
    assert "missing.pth" in capsys.readouterr().err


def test_doctor_reports(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "cuda" in out and "stylegan2 ops" in out
