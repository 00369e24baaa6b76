"""pSp encoders and ArcFace: the published key layout (golden), wiring of the feature pyramid and the heads, every
ENCODERS entry at tiny size, architecture read back from weights, input checks, the ArcFace loader."""
import os
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nets.encoders import (ENCODERS, IR_UNITS, ArcFace, BottleneckIR, Encoder4Editing, GradualStyleEncoder, MapToStyle,
                           build_encoder, encoder_spec_from_state_dict, load_arcface, load_backbone_weights,
                           n_styles_for)

LAYOUT = os.path.join(os.path.dirname(__file__), "..", "data", "psp", "psp_1024_layout.tsv")
E4E_LAYOUT = os.path.join(os.path.dirname(__file__), "..", "data", "e4e", "e4e_1024_layout.tsv")
TINY = dict(channels=(8, 16, 32, 64), w_dim=32, output_size=32, input_size=32)  # 8 styles from 32-px inputs


def read_layout(prefix, path=LAYOUT):
    """{key without prefix: (shape, dtype)} of the golden pSp (or e4e) state_dict layout."""
    out = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            key, shape, dtype = line.rstrip("\n").split("\t")
            if key.startswith(prefix):
                out[key[len(prefix):]] = (tuple(int(s) for s in shape.strip("()").split(",") if s.strip()), dtype)
    return out


def layout_of(net):
    return {k: (tuple(v.shape), str(v.dtype)) for k, v in net.state_dict().items()}


# ---- the published layout ----------------------------------------------------------------------------------------
def test_paper_encoder_has_the_published_psp_layout():
    golden = read_layout("encoder.")
    assert len(golden) == 621
    with torch.device("meta"):  # 267M parameters: shapes only
        enc = GradualStyleEncoder(num_layers=50, mode="ir_se", input_nc=3, output_size=1024)
    ours = layout_of(enc)
    assert sorted(set(golden) - set(ours)) == [] and sorted(set(ours) - set(golden)) == []
    assert {k: v for k, v in ours.items() if golden[k] != v} == {}
    assert enc.n_styles == 18 and enc.taps == (6, 20, 23)  # the reference's hard-coded body indices for IR-50


def test_e4e_encoder_has_the_published_e4e_layout_which_is_psps():
    golden = read_layout("encoder.", E4E_LAYOUT)
    assert list(golden.items()) == list(read_layout("encoder.").items())  # key for key, in order
    with torch.device("meta"):
        enc = Encoder4Editing(num_layers=50, mode="ir_se", input_nc=3, output_size=1024)
    assert layout_of(enc) == golden and list(layout_of(enc)) == list(golden)


def test_e4e_adds_the_deltas_of_its_progressive_stage_to_one_w():
    torch.manual_seed(0)
    e4e = Encoder4Editing(**TINY).eval()
    psp = GradualStyleEncoder(**TINY).eval()
    psp.load_state_dict(e4e.state_dict())  # the same modules: pSp's heads are e4e's deltas
    x = torch.randn(2, 3, 32, 32)
    assert e4e.progressive_stage == 7  # every delta after construction (the reference's Inference)
    with torch.no_grad():
        heads = psp(x)
        w0 = heads[:, :1]
        for stage in (0, 3, 7, 18):
            e4e.progressive_stage = stage
            codes = e4e(x)
            used = min(stage, 7) + 1
            torch.testing.assert_close(codes[:, :1], w0)
            torch.testing.assert_close(codes[:, 1:used], w0 + heads[:, 1:used])
            torch.testing.assert_close(codes[:, used:], w0.expand(-1, 8 - used, -1))


def test_arcface_has_the_published_ir_se50_layout():
    with torch.device("meta"):
        net = ArcFace()
    ours = layout_of(net)
    # the encoder and ArcFace share input_layer + body (pSp initialises its encoder from these weights)
    golden_body = {k: v for k, v in read_layout("encoder.").items() if k.startswith(("input_layer.", "body."))}
    assert {k: v for k, v in ours.items() if k.startswith(("input_layer.", "body."))} == golden_body
    head = {k: v[0] for k, v in ours.items() if k.startswith("output_layer.")}
    assert head == {"output_layer.0.weight": (512,), "output_layer.0.bias": (512,),
                    "output_layer.0.running_mean": (512,), "output_layer.0.running_var": (512,),
                    "output_layer.0.num_batches_tracked": (), "output_layer.3.weight": (512, 512 * 7 * 7),
                    "output_layer.3.bias": (512,), "output_layer.4.weight": (512,), "output_layer.4.bias": (512,),
                    "output_layer.4.running_mean": (512,), "output_layer.4.running_var": (512,),
                    "output_layer.4.num_batches_tracked": ()}


# ---- structure and wiring ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_layers", sorted(IR_UNITS))
def test_backbone_depths_and_pyramid_taps(num_layers):
    enc = GradualStyleEncoder(num_layers=num_layers, **TINY)
    units = IR_UNITS[num_layers]
    assert len(enc.body) == sum(units)
    ends = [sum(units[:i + 1]) - 1 for i in range(4)]
    assert enc.taps == tuple(ends[1:])
    sizes = {}
    hooks = [enc.body[i].register_forward_hook(lambda m, a, out, i=i: sizes.__setitem__(i, tuple(out.shape[1:])))
             for i in enc.taps]
    with torch.no_grad():
        enc.eval()(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    # after stages 2, 3, 4: a quarter, an eighth, a sixteenth of the input side (64, 32, 16 px at 256)
    assert [sizes[i] for i in enc.taps] == [(16, 8, 8), (32, 4, 4), (64, 2, 2)]


def test_ir_se_unit_computes_bn_conv_prelu_conv_bn_se_plus_shortcut():
    torch.manual_seed(0)
    for in_ch, out_ch, stride in [(8, 8, 2), (8, 16, 2), (16, 16, 1)]:
        unit = BottleneckIR(in_ch, out_ch, stride, se=True).eval()
        for m in unit.modules():  # non-trivial BN statistics and PReLU slopes
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 2)
            if isinstance(m, nn.PReLU):
                m.weight.data.uniform_(0, 0.5)
        x = torch.randn(2, in_ch, 8, 8)
        bn1, conv1, prelu, conv2, bn2, se = unit.res_layer
        r = bn2(conv2(prelu(conv1(bn1(x)))))
        assert conv1.stride == (1, 1) and conv2.stride == (stride, stride) and conv1.bias is None
        gate = torch.sigmoid(se.fc2(torch.relu(se.fc1(r.mean(dim=(2, 3), keepdim=True)))))
        shortcut = x[:, :, ::stride, ::stride] if in_ch == out_ch else unit.shortcut_layer(x)
        with torch.no_grad():
            torch.testing.assert_close(unit(x), r * gate + shortcut)
    plain = BottleneckIR(8, 8, 1, se=False)
    assert len(plain.res_layer) == 5 and not any(type(m).__name__ == "SEModule" for m in plain.modules())


def test_map2style_heads():
    head = MapToStyle(64, 32, spatial=8)
    convs = [m for m in head.convs if isinstance(m, nn.Conv2d)]
    acts = [m for m in head.convs if isinstance(m, nn.LeakyReLU)]
    assert len(convs) == 3 and all(c.stride == (2, 2) for c in convs) and [a.negative_slope for a in acts] == [0.01] * 3
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        feat = head.convs(x)
        assert feat.shape == (2, 32, 1, 1)
        lin = head.linear  # equalized learning rate: weight scaled by 1 / sqrt(fan_in) at run time
        torch.testing.assert_close(head(x), F.linear(feat.flatten(1), lin.weight / 32 ** 0.5, lin.bias))
    enc = GradualStyleEncoder(**TINY)
    n_convs = [sum(isinstance(m, nn.Conv2d) for m in s.convs) for s in enc.styles]
    assert n_convs == [1] * 3 + [2] * 4 + [3]  # coarse 2 px, middle 4 px, fine 8 px maps down to 1x1


def test_styles_come_from_coarse_middle_fine_maps():
    torch.manual_seed(0)
    enc = GradualStyleEncoder(**dict(TINY, output_size=64)).eval()  # 10 styles: 3 coarse, 4 middle, 3 fine
    seen = {}
    for i, s in enumerate(enc.styles):
        s.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, a[0].shape[-1]))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        base = enc(x)
        assert base.shape == (2, 10, 32) and seen == {i: 2 if i < 3 else 4 if i < 7 else 8 for i in range(10)}
        enc.latlayer2.weight.zero_(), enc.latlayer2.bias.zero_()  # cut the finest lateral input
        cut_fine = enc(x)
        enc.latlayer1.weight.zero_(), enc.latlayer1.bias.zero_()
        cut_both = enc(x)
    # top-down pyramid: coarse styles never see the laterals, middle ones see latlayer1, fine ones both
    torch.testing.assert_close(cut_fine[:, :7], base[:, :7])
    assert not torch.allclose(cut_fine[:, 7:], base[:, 7:])
    torch.testing.assert_close(cut_both[:, :3], base[:, :3])
    assert not torch.allclose(cut_both[:, 3:7], base[:, 3:7])


# ---- every entry at tiny size ------------------------------------------------------------------------------------
OUT_SHAPE = {"GradualStyleEncoder": (2, 8, 32), "BackboneEncoderUsingLastLayerIntoW": (2, 32),
             "BackboneEncoderUsingLastLayerIntoWPlus": (2, 8, 32), "Encoder4Editing": (2, 8, 32)}


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_encoder_forward_backward(name):
    torch.manual_seed(0)
    assert set(OUT_SHAPE) == set(ENCODERS)
    for input_nc in (1, 3, 19):  # sketch, image, one-hot label map (label_nc 19)
        enc = build_encoder(name, input_nc=input_nc, **TINY)
        assert enc.n_styles == 8
        with torch.no_grad():
            assert enc.eval()(torch.randn(2, input_nc, 32, 32)).shape == OUT_SHAPE[name]
    out = enc.train()(torch.randn(2, input_nc, 32, 32))
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for key, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), key
    assert enc.input_layer[0].weight.grad.abs().sum() > 0


def test_encoder_export_round_trip(export_round_trip):
    torch.manual_seed(0)
    enc = GradualStyleEncoder(input_nc=1, **TINY).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(export_round_trip(enc, x), enc(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("num_layers,mode", [(50, "ir_se"), (100, "ir"), (152, "ir_se")])
@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_architecture_is_read_back_from_the_weights(name, num_layers, mode):
    enc = build_encoder(name, num_layers=num_layers, mode=mode, input_nc=5, **dict(TINY, output_size=64))
    spec = encoder_spec_from_state_dict(enc.state_dict(), input_size=32)
    if name == "Encoder4Editing":  # the same keys as pSp's: only a checkpoint's opts tell (psp_checkpoint)
        spec["name"] = name
    assert spec == enc.spec() or (name.endswith("IntoW") and spec == {k: v for k, v in enc.spec().items()
                                                                      if k != "output_size"})
    rebuilt = build_encoder(**dict(enc.spec()))
    rebuilt.load_state_dict(enc.state_dict(), strict=True)


def test_n_styles_from_output_size():
    assert [n_styles_for(s) for s in (16, 32, 256, 1024)] == [6, 8, 14, 18]
    with pytest.raises(ValueError, match="output_size must be a power of two >= 4, got 100"):
        n_styles_for(100)


# ---- bad input ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_wrong_input_names_expected_and_actual_shape(name):
    enc = build_encoder(name, input_nc=3, **TINY)
    for bad in [(2, 1, 32, 32), (2, 3, 64, 64), (2, 3, 32, 16), (3, 32, 32)]:
        with pytest.raises(ValueError, match=re.escape(f"{name}: expected an image batch (N, 3, 32, 32), "
                                                       f"got {tuple(bad)}")):
            enc(torch.zeros(bad))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"encoder_type: expected one of \['BackboneEncoderUsingLastLayerIntoW', "):
        build_encoder("ResNetEncoder")
    with pytest.raises(ValueError, match=r"num_layers: expected one of \[50, 100, 152\], got 34"):
        GradualStyleEncoder(num_layers=34)
    with pytest.raises(ValueError, match=r"mode: expected one of \('ir', 'ir_se'\), got 'se'"):
        GradualStyleEncoder(mode="se")
    with pytest.raises(ValueError, match=r"channels: expected 4 positive stage widths, got \(8, 16\)"):
        GradualStyleEncoder(channels=(8, 16))
    with pytest.raises(ValueError, match="input_size: expected a power of two >= 32 .* got 48"):
        GradualStyleEncoder(**dict(TINY, input_size=48))
    with pytest.raises(ValueError, match="input_nc: expected a positive number of input channels, got 0"):
        build_encoder("BackboneEncoderUsingLastLayerIntoW", input_nc=0, **TINY)
    with pytest.raises(ValueError, match="output_size must be a power of two"):
        build_encoder("BackboneEncoderUsingLastLayerIntoWPlus", **dict(TINY, output_size=48))
    with pytest.raises(ValueError, match=r"not an IR backbone \(no input_layer.0.weight"):
        encoder_spec_from_state_dict({"x": torch.zeros(1)})


# ---- ArcFace -----------------------------------------------------------------------------------------------------
def test_arcface_loads_the_published_file_layout(tmp_path):
    torch.manual_seed(0)
    ref = ArcFace()
    buffers = {k for k, _ in ref.named_buffers() if k.endswith(("running_mean", "running_var"))}
    sd = {k: (v + torch.rand_like(v) if k in buffers else v) for k, v in ref.state_dict().items()}  # 43M weights
    torch.save(sd, tmp_path / "model_ir_se50.pth")  # the published file is a plain state dict
    net = load_arcface(tmp_path / "model_ir_se50.pth")
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())
    sd["output_layer.5.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"model.id_weights .*extra.pth.*unexpected \(1\): output_layer.5.weight"):
        load_arcface(tmp_path / "extra.pth")


def test_arcface_forward_is_an_l2_normalised_embedding():
    torch.manual_seed(0)
    net = ArcFace(channels=(8, 16, 32, 64), embedding_dim=16).eval()
    x = torch.rand(3, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        emb = net(x)
        feat = net.output_layer(net.body(net.input_layer(x)))
    assert emb.shape == (3, 16)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(emb, feat / feat.norm(dim=1, keepdim=True))
    with pytest.raises(ValueError, match=re.escape("ArcFace: expected an image batch (N, 3, 112, 112), "
                                                   "got (3, 3, 256, 256)")):
        net(torch.zeros(3, 3, 256, 256))


def test_arcface_missing_weights_name_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model.id_weights: ArcFace weights not found: .*nope.pth"):
        load_arcface(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="model.id_weights is not set"):
        load_arcface(None)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"model.id_weights: cannot read .*junk.pth with torch.load\(weights_only"):
        load_arcface(tmp_path / "junk.pth")


def test_encoder_backbone_from_arcface_weights():
    torch.manual_seed(0)
    arc = ArcFace(channels=TINY["channels"]).state_dict()
    enc = GradualStyleEncoder(**TINY)
    copied = load_backbone_weights(enc, arc, "arcface")
    assert "input_layer.0.weight" in copied and all(torch.equal(enc.state_dict()[k], arc[k]) for k in copied)
    assert {k for k in enc.state_dict() if k.startswith(("body.", "input_layer."))} == set(copied)
    sketch = GradualStyleEncoder(input_nc=1, **TINY)  # a 1-channel input keeps its own input layer
    copied = load_backbone_weights(sketch, arc, "arcface")
    assert not any(k.startswith("input_layer.") for k in copied) and "body.23.res_layer.1.weight" in copied
    with pytest.raises(ValueError, match=r"arcface does not fit the encoder's backbone: shape mismatch"):
        load_backbone_weights(GradualStyleEncoder(**dict(TINY, channels=(8, 16, 32, 32))), arc, "arcface")


def test_face_recognition_layouts_are_read_off_the_file(tmp_path):
    """model.id_weights / evaluate --id-weights take pSp's IR-SE50 and CurricularFace's plain IR-101 (no affine
    embedding norm: the network of pSp's identity-similarity metric); the layout comes from the state dict."""
    from nets.encoders import face_net_spec

    torch.manual_seed(0)
    curricular = ArcFace(num_layers=100, mode="ir", affine=False, channels=(8, 8, 16, 16), embedding_dim=24)
    sd = curricular.state_dict()
    assert face_net_spec(sd, "f") == {"num_layers": 100, "mode": "ir", "channels": [8, 8, 16, 16], "affine": False,
                                      "embedding_dim": 24}
    torch.save(sd, tmp_path / "CurricularFace_Backbone.pth")
    net = load_arcface(tmp_path / "CurricularFace_Backbone.pth")
    assert all(torch.equal(net.state_dict()[k], v) for k, v in sd.items())
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(net(x), curricular.eval()(x))
    wide = ArcFace(channels=(8, 8, 16, 16), input_size=224).state_dict()  # a 224-px net: 14 x 14 features
    with pytest.raises(ValueError, match=r"x: the embedding layer takes 3136 features; a 112-px network has 16 x 7"):
        face_net_spec(wide, "x")
    gray = GradualStyleEncoder(input_nc=1, **TINY).state_dict()
    with pytest.raises(ValueError, match=r"without a face-recognition embedding layer"):
        face_net_spec(gray, "x")
    gray = {**sd, "input_layer.0.weight": sd["input_layer.0.weight"][:, :1]}
    with pytest.raises(ValueError, match=r"takes RGB; this one takes 1 channels"):
        face_net_spec(gray, "x")
