import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from translate.deploy.subpixel import rewrite_transposed_convolutions, subpixel_weights

UP_LAYERS = [dict(kernel_size=4, stride=2, padding=1),                    # U-Net's up layers
             dict(kernel_size=3, stride=2, padding=1, output_padding=1)]  # ResNet generator's


@pytest.mark.parametrize("kw", UP_LAYERS)
@pytest.mark.parametrize("bias", [True, False])
def test_subpixel_convolution_equals_the_transposed_one(kw, bias):
    torch.manual_seed(0)
    ct = nn.ConvTranspose2d(5, 3, bias=bias, **kw).double()
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64)
    k, b = subpixel_weights(ct.weight.detach().numpy(), None if ct.bias is None else ct.bias.detach().numpy())
    y = F.pixel_shuffle(F.conv2d(x, torch.from_numpy(k), torch.from_numpy(b), padding=1), 2)
    torch.testing.assert_close(y, ct(x), rtol=0, atol=1e-12)


def _onnx(net: nn.Module, x: torch.Tensor) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(net, x, buf, input_names=["x"], output_names=["y"], dynamo=False, opset_version=17)
    return onnx.load_from_string(buf.getvalue())


def _run(model: onnx.ModelProto, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x.numpy()})[0]


def test_the_graph_rewrite_keeps_the_outputs_and_leaves_other_layers_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.ConvTranspose2d(4, 6, **UP_LAYERS[0]), nn.ReLU(),
                        nn.ConvTranspose2d(6, 5, **UP_LAYERS[1]), nn.ReLU(),
                        nn.ConvTranspose2d(5, 3, kernel_size=3, stride=1, padding=1)).eval()  # stride 1: kept
    x = torch.randn(1, 4, 8, 8)
    model = _onnx(net, x)
    before = _run(model, x)
    assert rewrite_transposed_convolutions(model) == 2
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("ConvTranspose") == 1 and ops.count("DepthToSpace") == 2 and ops.count("Conv") == 2
    onnx.checker.check_model(model)
    np.testing.assert_allclose(_run(model, x), before, rtol=0, atol=1e-5)
    names = {t.name for t in model.graph.initializer}
    read = {i for n in model.graph.node for i in n.input}
    assert names <= read  # the rewritten layers' transposed kernels are gone
