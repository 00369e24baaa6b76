"""Benchmark scripts that have logic of their own beyond timing: what they report is checked on small graphs."""
import importlib.util
import io
import json
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_onnx_profile_reports_every_op_type_and_the_slowest_nodes(tmp_path, capsys):
    profile = _script("onnx_profile")
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.InstanceNorm2d(8), nn.Conv2d(8, 3, 3, padding=1)).eval()
    buf = io.BytesIO()
    torch.onnx.export(net, torch.randn(1, 3, 16, 16), buf, input_names=["image"], dynamo=False, opset_version=17,
                      dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}})
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "tiny.onnx").write_bytes(buf.getvalue())
    (bundle / "translator.json").write_text(json.dumps({"files": {"onnx": "tiny.onnx"}}))
    assert profile.onnx_file(bundle) == bundle / "tiny.onnx"  # a bundle: the file its onnx backend runs
    by_op, by_node = profile.profile(bundle / "tiny.onnx", threads=1, runs=2, size=24)
    assert {"Conv", "InstanceNormalization"} <= set(by_op) and all(ms >= 0 for ms in by_op.values())
    assert abs(sum(ms for _, ms, _, _ in by_node.values()) - sum(by_op.values())) < 1e-6
    convs = [v for v in by_node.values() if v[0] == "Conv"]
    assert convs and any("[1,3,24,24]" in ins for _, _, ins, _ in convs)  # shapes of the size asked for
    assert profile.main([str(bundle), "--runs", "1", "--size", "16", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "| Conv |" in out and "| InstanceNormalization |" in out and "| slowest nodes |" in out
