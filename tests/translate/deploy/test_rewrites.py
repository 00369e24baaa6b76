"""translate/deploy/rewrites.py: the phase forms of transposed and thin convolutions equal the originals."""
import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from translate.deploy.rewrites import (phase_convolutions, phase_stacked_weights, rewrite_thin_convolutions,
                                       rewrite_transposed_convolutions)

UP_LAYERS = [dict(kernel_size=4, stride=2, padding=1),                    # U-Net's up layers
             dict(kernel_size=3, stride=2, padding=1, output_padding=1)]  # ResNet generator's


def interleave(phases: torch.Tensor) -> torch.Tensor:
    """DepthToSpace(2, "DCR"): channel (2a + b) C + c at (i, j) -> channel c at (2i + a, 2j + b)."""
    n, c4, h, w = phases.shape
    c = c4 // 4
    return phases.reshape(n, 2, 2, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c, 2 * h, 2 * w)


@pytest.mark.parametrize("kw", UP_LAYERS)
@pytest.mark.parametrize("bias", [True, False])
def test_phase_convolutions_equal_the_transposed_one(kw, bias):
    torch.manual_seed(0)
    ct = nn.ConvTranspose2d(5, 3, bias=bias, **kw).double()
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64)
    phases = []
    for k, (top, left, bottom, right) in phase_convolutions(ct.weight.detach().numpy()):
        phases.append(F.conv2d(F.pad(x, (left, right, top, bottom)), torch.from_numpy(k), ct.bias))
    assert [p.shape[2:] for p in phases] == [x.shape[2:]] * 4
    taps = [k.shape[2] * k.shape[3] for k, _ in phase_convolutions(ct.weight.detach().numpy())]
    assert sum(taps) == kw["kernel_size"] ** 2  # every tap once: no multiply-add by a zero tap
    torch.testing.assert_close(interleave(torch.cat(phases, 1)), ct(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel,padding", [(7, 0), (3, 1), ((4, 5), (2, 1)), (3, 0)])
@pytest.mark.parametrize("size", [(9, 12), (10, 11)])  # odd and even outputs
def test_phase_stacked_convolution_equals_the_thin_one(kernel, padding, size):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 3, kernel, padding=padding).double()
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    want = conv(x)
    kh, kw = conv.kernel_size
    pt, pl = conv.padding
    k = torch.from_numpy(phase_stacked_weights(conv.weight.detach().numpy()))
    assert k.shape == (12, 6, kh + 1, kw + 1)
    y = interleave(F.conv2d(F.pad(x, (pl, pl + 1, pt, pt + 1)), k, conv.bias.repeat(4), stride=2))
    assert y.shape[2] in (want.shape[2], want.shape[2] + 1) and y.shape[3] in (want.shape[3], want.shape[3] + 1)
    torch.testing.assert_close(y[:, :, :want.shape[2], :want.shape[3]], want, rtol=0, atol=1e-12)


def _onnx(net: nn.Module, x: torch.Tensor, opset: int = 17) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(net, x, buf, input_names=["x"], output_names=["y"], dynamo=False, opset_version=opset,
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    return onnx.load_from_string(buf.getvalue())


def _run(model: onnx.ModelProto, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x.numpy()})[0]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(4, 3, 3),                                            # thin: rewritten
                         nn.ConvTranspose2d(3, 6, **UP_LAYERS[0]), nn.ReLU(),
                         nn.ConvTranspose2d(6, 5, **UP_LAYERS[1]), nn.ReLU(),
                         nn.ConvTranspose2d(5, 5, kernel_size=3, stride=1, padding=1),  # stride 1: kept
                         nn.ReflectionPad2d(3), nn.Conv2d(5, 3, 7),                     # thin: rewritten
                         nn.Conv2d(3, 8, 3, padding=1),                                 # 8 channels: kept
                         nn.Conv2d(8, 2, 3, padding=1, bias=False)).eval()              # thin, padded: rewritten


def test_the_graph_rewrites_keep_the_outputs_and_leave_other_layers_alone():
    net = _net()
    model = _onnx(net, torch.randn(1, 4, 8, 8))
    sizes = [torch.randn(1, 4, 8, 8), torch.randn(2, 4, 5, 7)]  # the first layer's output: 6x6, and 3x5 (odd)
    before = [_run(model, x) for x in sizes]
    assert rewrite_transposed_convolutions(model) == 2
    assert rewrite_thin_convolutions(model) == 3
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("ConvTranspose") == 1 and ops.count("DepthToSpace") == 5 and ops.count("Conv") == 4 * 2 + 3 + 1
    onnx.checker.check_model(model)
    for x, want in zip(sizes, before):
        got = _run(model, x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    names = {t.name for t in model.graph.initializer}
    read = {i for n in model.graph.node for i in n.input}
    assert names <= read  # the rewritten layers' weights are gone
    assert rewrite_transposed_convolutions(model) == rewrite_thin_convolutions(model) == 0  # nothing left to do


def test_graphs_of_an_old_opset_are_left_alone():
    model = _onnx(_net(), torch.randn(1, 4, 8, 8), opset=11)
    before = model.SerializeToString()
    assert rewrite_transposed_convolutions(model) == rewrite_thin_convolutions(model) == 0
    assert model.SerializeToString() == before


class _Padded(nn.Module):
    """Reflection pad -> conv twice, a zero pad -> conv, and a reflection pad also read by an Add."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.d = (nn.Conv2d(3, 3, 3) for _ in range(4))

    def forward(self, x):
        x = torch.relu(self.a(F.pad(x, (1, 1, 1, 1), mode="reflect")))
        x = torch.relu(self.b(F.pad(x, (1, 1, 1, 1), mode="reflect")))
        x = torch.relu(self.c(F.pad(x, (1, 1, 1, 1))))  # zero padding: its value would have to quantise exactly
        p = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return self.d(p) + p[:, :, 1:-1, 1:-1].mean()  # the fp32 padded tensor is read too


def test_quantisation_moves_in_front_of_reflection_padding(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from translate.deploy.rewrites import quantize_before_padding

    torch.manual_seed(0)
    xs = [torch.randn(1, 3, 12, 10) for _ in range(3)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.left = [x.numpy() for x in xs]

        def get_next(self):
            return {"x": self.left.pop(0)} if self.left else None

    quantize_static(_onnx(_Padded().eval(), xs[0]), str(tmp_path / "q.onnx"), Reader(),
                    quant_format=QuantFormat.QOperator, op_types_to_quantize=["Conv"],
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    model = onnx.load(str(tmp_path / "q.onnx"))
    before = [_run(model, x) for x in xs]
    assert quantize_before_padding(model) == 2
    onnx.checker.check_model(model)
    made = {o: n for n in model.graph.node for o in n.output}
    pads = [n for n in model.graph.node if n.op_type == "Pad"]
    assert sorted(made[n.input[0]].op_type if n.input[0] in made else "input" for n in pads) == \
        ["QuantizeLinear", "QuantizeLinear", "Relu", "Relu"]  # the zero pad and the pad read twice stay fp32
    for x, want in zip(xs, before):
        np.testing.assert_array_equal(_run(model, x), want)  # the same values, bit for bit
