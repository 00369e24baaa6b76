"""Norm layers and inference copies: running vs per-sample statistics, dropout, exportability."""
import copy

import pytest
import torch
from torch import nn

from nets import build_generator, get_norm_layer, inference_copy
from nets.junyanz import import_generator


def test_get_norm_layer():
    bn = get_norm_layer("batch")(5)
    assert type(bn) is nn.BatchNorm2d and bn.affine and bn.track_running_stats and bn.num_features == 5
    inorm = get_norm_layer("instance")(5)
    assert type(inorm) is nn.InstanceNorm2d and not inorm.affine and not inorm.track_running_stats
    assert list(inorm.state_dict()) == []
    assert type(get_norm_layer("none")(5)) is nn.Identity
    with pytest.raises(ValueError, match=r"norm: expected one of \['batch', 'instance', 'none'\], got 'group'"):
        get_norm_layer("group")


def trained_unet(use_dropout=False):
    """A small U-Net whose BatchNorm running stats are far from the batch statistics (as after training)."""
    torch.manual_seed(0)
    net = build_generator("unet", 3, 3, ngf=4, num_downs=5, use_dropout=use_dropout)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.2, 0.2)
    return net


def test_running_copy_is_eval_mode_and_leaves_the_original_alone():
    net = trained_unet(use_dropout=True).train()
    before = copy.deepcopy(net.state_dict())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    inf = inference_copy(net, "running")
    assert not inf.training and not any(m.training for m in inf.modules())
    assert not any(p.requires_grad for p in inf.parameters())
    assert not any(isinstance(m, nn.Dropout) for m in inf.modules())
    with torch.no_grad():
        y = inf(x)
        torch.testing.assert_close(inf(x), y, atol=0, rtol=0)  # deterministic
        torch.testing.assert_close(y, net.eval()(x), atol=1e-6, rtol=0)
    assert net.training is False and all(p.requires_grad for p in net.parameters())  # eval() above was ours
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert inf.state_dict().keys() == net.state_dict().keys()


def test_sample_copy_equals_train_mode_bn_at_batch_one():
    net = trained_unet()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    inf = inference_copy(net, "sample")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in inf.modules())
    with torch.no_grad():
        for i in range(3):
            torch.testing.assert_close(inf(x[i:i + 1]), copy.deepcopy(net).train()(x[i:i + 1]), atol=1e-5, rtol=0)
        assert not torch.allclose(inf(x[:1]), net.eval()(x[:1]), atol=1e-3)  # running stats differ


def test_sample_copy_on_reference_weights(golden):
    net, _ = import_generator(golden("unet128_batch_ngf8.pt")["state_dict"])
    x = golden("unet128_batch_ngf8.pt")["input"]
    with torch.no_grad():
        reference_test_mode = copy.deepcopy(net).train()(x[1:])  # the reference's test.py: train-mode BN, batch 1
        torch.testing.assert_close(inference_copy(net, "sample")(x[1:]), reference_test_mode, atol=1e-5, rtol=0)


def test_sample_copy_ignores_the_rest_of_the_batch():
    net = trained_unet()
    inf = inference_copy(net, "sample")
    torch.manual_seed(1)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    others = torch.randn(3, 3, 32, 32) * 3  # very different statistics
    with torch.no_grad():
        alone = inf(x)
        torch.testing.assert_close(inf(torch.cat([x, others]))[:1], alone, atol=1e-5, rtol=0)
        torch.testing.assert_close(inf(torch.cat([others, x]))[3:], alone, atol=1e-5, rtol=0)
        # whereas train-mode BN mixes the batch
        train = copy.deepcopy(net).train()
        assert not torch.allclose(train(torch.cat([x, others]))[:1], train(x), atol=1e-3)


def test_dropout_flag():
    net = build_generator("unet", 3, 3, ngf=4, num_downs=6, use_dropout=True)  # dropout in the middle level
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        off = inference_copy(net, "sample", dropout=False)
        torch.testing.assert_close(off(x), off(x), atol=0, rtol=0)
        on = inference_copy(net, "sample", dropout=True)
        assert not on.training
        torch.manual_seed(0)
        first, second = on(x), on(x)
        assert not torch.equal(first, second)  # stochastic ...
        torch.manual_seed(0)
        assert torch.equal(on(x), first)  # ... drawn from torch's RNG


def test_bad_norm_stats():
    with pytest.raises(ValueError, match=r"norm_stats: expected 'running' or 'sample', got 'batch'"):
        inference_copy(trained_unet(), "batch")


def test_sample_copy_exports_with_dynamic_shapes():
    """No data-dependent control flow: one program serves every batch size and multiple of the size (the running
    copy is plain eval-mode BatchNorm; test_generators exports it for every entry)."""
    inf = inference_copy(trained_unet(), "sample")
    x = torch.rand(2, 3, 64, 64) * 2 - 1  # traced at 2 of each (torch.export specialises sizes of 1)
    dims = {0: torch.export.Dim("batch", min=2, max=64), 2: 32 * torch.export.Dim("h_blocks", min=2, max=64),
            3: 32 * torch.export.Dim("w_blocks", min=2, max=64)}
    program = torch.export.export(inf, (x,), dynamic_shapes=(dims,)).module()
    with torch.no_grad():
        for shape in [(2, 3, 64, 64), (3, 3, 128, 96)]:
            y = torch.rand(shape) * 2 - 1
            torch.testing.assert_close(program(y), inf(y), atol=1e-5, rtol=0)


def test_sample_copy_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    inf = inference_copy(trained_unet(), "sample")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    torch.onnx.export(inf, (x,), dynamo=True, input_names=["image"]).save(str(tmp_path / "m.onnx"))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = inf(x).numpy()
    assert abs(session.run(None, {"image": x.numpy()})[0] - expected).max() < 1e-5
