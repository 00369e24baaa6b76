"""pSp: a few-step fit through the runner on toy faces, export + parity + predict with style-mixed variants, a
published-layout checkpoint imported into a bundle, the frozen prior, the losses, and clear errors."""
import argparse
import json

import numpy as np
import pytest
import torch
from PIL import Image

from nets.psp import PSPNet
from translate import cli
from translate.train import runner
from translate.methods.optim import Ranger
from nets.similarity import face_crop
from translate.methods.psp import PSP, PSPConfig
from tests.helpers.psp_checkpoints import make_checkpoint, save_as_if_from_gpu

# random loss nets, 32-px toy sketches -> faces
SKETCH_RUN = ["model.lpips_weights=random", "model.id_weights=random", "data.kind=toyfaces",
              "data.toyfaces.task=sketch", "data.toyfaces.size=32", "data.toyfaces.n_train=8", "data.toyfaces.n_val=4",
              "data.input_nc=1", "data.batch_size=2"]


def module(prior_path, **model):
    base = dict(prior=str(prior_path), channels=[4, 8, 8, 16], input_size=32, loss_size=32, lpips_weights="random",
                id_weights="random")
    return PSP(model=PSPConfig(**{**base, **model}), input_nc=1)


@pytest.mark.filterwarnings("ignore:.*randomly initialised")
def test_fit_resume_export_predict_variants(prior, tmp_path, tiny_psp_config):
    cfg = tiny_psp_config(prior, tmp_path / "run", *SKETCH_RUN, "trainer.max_steps=2", "model.w_norm_lambda=0.01")
    trainer, mod = runner.fit(cfg)
    metrics = trainer.callback_metrics
    for k in ("l2", "lpips", "id", "w_norm", "loss"):
        assert torch.isfinite(metrics[f"train/{k}"]), k
    decoder_before = {k: v.clone() for k, v in mod.net.decoder.state_dict().items()}
    assert not any(k.startswith("_loss") or "arcface" in k for k in mod.state_dict())  # loss nets not saved

    cfg = tiny_psp_config(prior, tmp_path / "run", *SKETCH_RUN, "trainer.max_steps=4")
    trainer, mod = runner.fit(cfg, resume="last")
    assert trainer.global_step == 4
    metrics = trainer.callback_metrics  # one epoch done: validated, with pSp's loss terms (monitor val/loss as pSp)
    for k in ("l2", "lpips", "id", "loss", "psnr"):
        assert torch.isfinite(metrics[f"val/{k}"]), k
    for k, v in mod.net.decoder.state_dict().items():  # the prior never trains
        assert torch.equal(v, decoder_before[k]), k

    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    # a trained checkpoint is used without the loss networks' weight files (here: files that do not exist)
    _, loaded = runner.load_run(ckpt, overrides=[f"model.lpips_weights={tmp_path / 'alex.pth'}",
                                                 f"model.id_weights={tmp_path / 'model_ir_se50.pth'}"])
    assert loaded._loss_nets is None
    bundle = tmp_path / "bundle"
    assert cli.main(["export", "--ckpt", str(ckpt), "--out", str(bundle)]) == 0
    from translate.deploy.inference import load_translator

    eager, onnx = load_translator(bundle), load_translator(bundle, backend="onnx")
    assert eager.backend == "eager" and eager.input_size == 32
    assert onnx.meta["input"]["dynamic"]["batch"]  # one ONNX run for a batch, not one per image
    x = torch.rand(3, 1, 48, 40) * 2 - 1  # any size: resized to the encoder's 32 px
    y = eager.translate_batch(x)
    assert y.shape == (3, 3, 32, 32)
    torch.testing.assert_close(onnx.translate_batch(x), y, atol=1e-3, rtol=0)

    from datamodules.toyfaces import write_toyfaces

    faces = write_toyfaces(tmp_path / "faces", n=3, size=32, split="val") / "images"
    out = tmp_path / "out"
    assert cli.main(["predict", "--model", str(bundle), "--input", str(faces), "--output", str(out),
                     "--variants", "2", "--latent-mask", "4-7", "--couple-outputs"]) == 0
    names = sorted(p.name for p in out.iterdir() if p.is_file())
    assert len(names) == 9 and sum("_mix" in n for n in names) == 6
    first = sorted(faces.iterdir())[0]  # input | output | variant 0 | variant 1, as pSp's coupled outputs
    coupled = np.array(Image.open(out / "side_by_side" / first.name))
    assert coupled.shape == (32, 128, 3) and len(list((out / "side_by_side").iterdir())) == 3
    for k, name in enumerate([first.name, f"{first.stem}_mix0.png", f"{first.stem}_mix1.png"], start=1):
        assert np.array_equal(coupled[:, 32 * k: 32 * (k + 1)], np.array(Image.open(out / name))), name
    pooled = tmp_path / "pooled"  # pSp's --resize_outputs: area-averaged to 16 px
    assert cli.main(["predict", "--model", str(bundle), "--input", str(faces), "--output", str(pooled),
                     "--variants", "1", "--latent-mask", "4-7", "--resize-outputs", "16"]) == 0
    from datamodules.io import read_image

    y = eager.translate_batch(eager.from_array(read_image(faces / "00000.png", 1))[None])[0]  # raw, unclamped
    expected = eager.to_uint8(y.reshape(3, 16, 2, 16, 2).mean((2, 4))).astype(int)  # pooled before clamping
    small = np.asarray(Image.open(pooled / "00000.png"), dtype=int)
    assert small.shape == (16, 16, 3) and Image.open(pooled / "00000_mix0.png").size == (16, 16)
    assert np.abs(small - expected).max() <= 1


@pytest.mark.filterwarnings("ignore:.*randomly initialised")
def test_feature_offset_option_trains_exports_and_mixes(prior, tmp_path, tiny_psp_config):
    """model.feature_res: the encoder also predicts an offset to the prior's 16-px features; the head starts at
    zero (plain pSp), trains, survives checkpoint -> bundle (eager and ONNX agree) and keeps it in the variants."""
    untrained = module(prior, feature_res=16).net.eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(untrained(x), untrained.decode(untrained.encode(x)))
    cfg = tiny_psp_config(prior, tmp_path / "run", *SKETCH_RUN, "trainer.max_steps=2", "model.feature_res=16",
                          "model.lpips_lambda=0", "model.id_lambda=0")
    _, mod = runner.fit(cfg)
    assert mod.net.feature_head.body[-1].weight.abs().sum() > 0  # trained away from zero
    bundle = tmp_path / "bundle"
    assert cli.main(["export", "--ckpt", str(tmp_path / "run" / "checkpoints" / "last.ckpt"),
                     "--out", str(bundle)]) == 0
    from translate.deploy.inference import load_translator

    eager, onnx = load_translator(bundle), load_translator(bundle, backend="onnx")
    net = eager._run.net
    assert net.feature_res == 16 and any(k.startswith("feature_head.") for k in net.state_dict())
    with torch.no_grad():
        codes, feature = net.encode_full(x)
        assert feature.shape == (2, 16, 16, 16)
        y = eager.translate_batch(x)
        torch.testing.assert_close(y, net.decode(codes, feature=feature))
        assert (y - net.decode(codes)).abs().max() > 1e-4  # the offset reaches the output
    torch.testing.assert_close(onnx.translate_batch(x), y, atol=1e-3, rtol=0)
    # variants mix the codes and keep the offset: mixed with weight 0 they are the translation itself
    torch.testing.assert_close(eager.variants(x, 2, [4, 5, 6, 7], 0.0)[1], y)
    assert (eager.variants(x, 1, [4, 5, 6, 7])[0] - y).abs().max() > 1e-4


def test_feature_offset_configuration_errors(prior):
    with pytest.raises(ValueError, match="model.feature_res and model.restyle_iters are both > 0"):
        module(prior, feature_res=16, restyle_iters=2)
    with pytest.raises(ValueError, match="model.feature_res needs model.encoder_type GradualStyleEncoder"):
        module(prior, feature_res=16, encoder_type="BackboneEncoderUsingLastLayerIntoWPlus")
    with pytest.raises(ValueError, match=r"model.feature_res: expected one of the prior's block resolutions "
                                         r"\[4, 8, 16, 32\] .* got 12"):
        module(prior, feature_res=12)
    with pytest.raises(ValueError, match="model.feature_res must be >= 0"):
        module(prior, feature_res=-1)


@pytest.mark.filterwarnings("ignore:.*randomly initialised")
def test_ddp_two_cpu_processes(prior, tmp_path, fit_ddp, tiny_psp_overrides):
    """pSp under Lightning's DDP: the encoder trains on both processes' data, the prior stays frozen."""
    from priors import load_prior

    last = fit_ddp(tmp_path / "run", *tiny_psp_overrides, f"model.prior={prior}", *SKETCH_RUN,
                   "model.w_norm_lambda=0.01", "trainer.max_epochs=1")
    # 8 faces over 2 processes x batch 2 = 2 steps per process
    assert last["global_step"] == 2 and last["psp_progress"] == {"n_steps": 2}
    for k, v in load_prior(prior).state_dict().items():
        assert torch.equal(last["state_dict"][f"net.decoder.{k}"], v), k


def test_prior_and_loss_nets_stay_frozen_in_eval_mode(prior):
    m = module(prior, moco_lambda=0.0)
    with pytest.warns(UserWarning, match="randomly initialised"):
        m.on_fit_start()  # builds the loss nets
    m.train()
    assert not m.net.decoder.training and m.net.encoder.training
    assert all(not p.requires_grad for p in m.net.decoder.parameters())
    assert all(not n.training for n in m.loss_nets.values())
    assert set(m.loss_nets) == {"lpips", "id"}


@pytest.mark.filterwarnings("ignore:.*randomly initialised")
def test_losses_follow_the_paper(prior):
    m = module(prior, l2_lambda=2.0, lpips_lambda=0.0, id_lambda=0.0, w_norm_lambda=0.5, l2_lambda_crop=3.0)
    y, y_hat = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    codes = m.net.latent_avg + torch.randn(2, m.net.n_styles, 16)
    terms = m.losses(None, y, y_hat, codes)
    assert terms["l2"].item() == pytest.approx(2.0 * ((y - y_hat) ** 2).mean().item(), rel=1e-5)
    t, b, l, r = face_crop(32)
    assert (t, b, l, r) == (4, 28, 4, 28)  # pSp's [35:223, 32:220] at 256 px, scaled
    crop = ((y - y_hat)[:, :, t:b, l:r] ** 2).mean()
    assert terms["l2_crop"].item() == pytest.approx(3.0 * crop.item(), rel=1e-5)
    # W-norm: the non-squared distance to the average latent, averaged over the batch
    dist = (codes - m.net.latent_avg).flatten(1).norm(dim=1).mean()
    assert terms["w_norm"].item() == pytest.approx(0.5 * dist.item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx(sum(v.item() for k, v in terms.items() if k != "loss"), rel=1e-5)


@pytest.mark.filterwarnings("ignore:.*randomly initialised")
def test_wrong_shapes_are_errors_naming_expected_and_actual(prior):
    m = module(prior)
    with pytest.raises(ValueError, match=r"expected an image batch \(N, 1, 32, 32\), got \(2, 1, 64, 64\)"):
        m.net.encode(torch.zeros(2, 1, 64, 64))
    with pytest.raises(ValueError, match=r"expected an image batch \(N, 1, 32, 32\), got \(2, 3, 32, 32\)"):
        m.net.encode(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"pSp target: expected \(N, 3, 32, 32\) \(model.loss_size\), got"):
        m._check_batch(torch.zeros(2, 1, 32, 32), torch.zeros(2, 3, 64, 64))


def test_missing_weights_name_the_key(prior, tmp_path):
    # loss networks are built when training starts (on_fit_start, before the first step)
    with pytest.raises(FileNotFoundError, match="model.id_weights"):
        module(prior, lpips_lambda=0.0, id_weights=str(tmp_path / "model_ir_se50.pth")).on_fit_start()
    with pytest.raises(Exception, match="model.lpips"):
        module(prior, id_lambda=0.0, lpips_weights=None).on_fit_start()
    with pytest.raises(ValueError, match="model.prior must be set"):
        PSP(model=PSPConfig(prior=None))
    with pytest.raises(FileNotFoundError, match=r"^model.prior: prior not found: .*nope"):
        module(prior, prior=str(tmp_path / "nope"))
    (tmp_path / "notes.txt").write_text("efg\n")
    with pytest.raises(ValueError, match=r"^model.prior: cannot read .*notes.txt with torch.load\(weights_only=True\):"
                                         r" not a readable PyTorch file"):
        module(prior, prior=str(tmp_path / "notes.txt"))
    with pytest.raises(FileNotFoundError, match=r"^model.encoder_weights: weight file not found: .*ir_se50.pth"):
        module(prior, encoder_weights=str(tmp_path / "ir_se50.pth"))
    with pytest.raises(ValueError, match=r"^model.encoder_weights: cannot load checkpoint .*notes.txt"):
        module(prior, encoder_weights=str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="id_lambda and model.moco_lambda"):
        module(prior, moco_lambda=0.1, moco_weights="random")


def test_style_mixing_touches_only_the_masked_layers(prior):
    from priors.loaders import load_prior
    from nets.encoders import build_encoder

    G = load_prior(prior)
    enc = build_encoder("GradualStyleEncoder", input_nc=3, output_size=32, input_size=32, channels=[4, 8, 8, 16],
                        w_dim=16)
    net = PSPNet(enc, G, G.mapping.w_avg).eval()
    codes, inject = torch.randn(2, 8, 16), torch.randn(1, 8, 16)
    mixed = net.mix(codes, inject, [5, 6, 7])
    assert torch.equal(mixed[:, :5], codes[:, :5]) and torch.equal(mixed[:, 5:], inject.expand(2, -1, -1)[:, 5:])
    half = net.mix(codes, inject, [7], alpha=0.25)
    torch.testing.assert_close(half[:, 7], 0.25 * inject[:, 7] + 0.75 * codes[:, 7])
    v = net.variants(torch.rand(2, 3, 32, 32) * 2 - 1, 3, [4, 5, 6, 7])
    assert v.shape == (3, 2, 3, 32, 32)
    assert (v[0] - v[1]).abs().max() > 1e-3  # different random styles give different outputs
    with pytest.raises(ValueError, match="outside 0..7"):
        net.mix(codes, inject, [8])


def test_published_checkpoint_imports_to_a_bundle(ros, tmp_path, monkeypatch):  # noqa: F811
    enc, ckpt = make_checkpoint(ros)
    path = tmp_path / "psp_ffhq_encode.pt"
    save_as_if_from_gpu(ckpt, path, monkeypatch)
    bundle = tmp_path / "bundle"
    assert cli.main(["import", "--from", "psp", "--weights", str(path), "--out", str(bundle)]) == 0
    from translate.deploy.inference import load_translator
    from translate.deploy.psp_checkpoint import load_psp_checkpoint

    psp = load_psp_checkpoint(path)
    net = PSPNet(psp.build_encoder(), psp.decoder, psp.latent_avg).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = net(x)
    for backend in ("eager", "onnx"):
        torch.testing.assert_close(load_translator(bundle, backend=backend).translate_batch(x), ref,
                                   atol=1e-3, rtol=0)
    meta = json.loads((bundle / "translator.json").read_text())  # the graphs take any batch size (shared-weight
    assert meta["input"]["dynamic"]["batch"] and meta["dynamic_fallback"] is None  # modconv in the export)
    assert meta["parity"]["shapes"] == [[1, 3, 32, 32], [2, 3, 32, 32]]


def test_predict_runs_psp_bundles_on_onnxruntime_unless_variants_are_wanted(ros, tmp_path, capsys):  # noqa: F811
    """On the CPU, `predict` (backend auto) runs a pSp bundle's ONNX graph, about twice as fast as eager there; style-
    mixed variants need the eager net. Both give the same images."""
    import numpy as np
    from PIL import Image

    _, ckpt = make_checkpoint(ros)
    torch.save(ckpt, tmp_path / "psp.pt")
    bundle = tmp_path / "bundle"
    assert cli.main(["import", "--from", "psp", "--weights", str(tmp_path / "psp.pt"), "--out", str(bundle)]) == 0
    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((32, 32, 3)) * 255).astype(np.uint8)).save(faces / f"{i}.png")
    capsys.readouterr()
    outputs = {}
    for name, extra in (("auto", []), ("eager", ["--backend", "eager"]),
                        ("mixed", ["--variants", "1", "--latent-mask", "4-7"])):
        assert cli.main(["predict", "--model", str(bundle), "--input", str(faces), "--output", str(tmp_path / name),
                         *extra]) == 0
        outputs[name] = {p.name: np.asarray(Image.open(p)).astype(int) for p in (tmp_path / name).iterdir()}
        outputs[name + " backend"] = capsys.readouterr().out
    assert "(onnx backend)" in outputs["auto backend"] and "(eager backend)" in outputs["eager backend"]
    assert "(eager backend)" in outputs["mixed backend"] and len(outputs["mixed"]) == 6
    for f, img in outputs["eager"].items():
        assert np.abs(outputs["auto"][f] - img).max() <= 1, f  # the same translation, to 8-bit rounding
        assert np.array_equal(outputs["mixed"][f], img), f


def test_fine_tuning_starts_from_a_published_checkpoint(ros, tmp_path, monkeypatch):  # noqa: F811
    """model.prior and model.encoder_weights both naming a pSp checkpoint: training starts from the published
    model (the reference's --checkpoint_path), its encoder loaded strictly; a mismatched encoder is an error."""
    enc, ckpt = make_checkpoint(ros)
    ckpt["opts"] = argparse.Namespace(**ckpt["opts"])  # as older pSp versions saved it
    path = tmp_path / "psp_ffhq_encode.pt"
    save_as_if_from_gpu(ckpt, path, monkeypatch)
    model = dict(prior=str(path), encoder_weights=str(path), channels=[8, 16, 32, 64], input_size=32, loss_size=32,
                 lpips_weights="random", id_weights="random")
    mod = PSP(model=PSPConfig(**model), input_nc=3)
    for k, v in enc.state_dict().items():
        assert torch.equal(mod.net.encoder.state_dict()[k], v), k
    torch.testing.assert_close(mod.net.latent_avg, ckpt["latent_avg"].float())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(mod.eval().net.encode(x), enc.eval()(x) + ckpt["latent_avg"][None].float())
    with pytest.raises(ValueError, match=r"encoder_weights .*encoder\.\* .*shape mismatch"):
        PSP(model=PSPConfig(**{**model, "channels": [8, 16, 32, 32]}), input_nc=3)
    from nets.encoders import load_arcface

    with pytest.raises(ValueError, match=r"model.id_weights: .* is a pSp checkpoint.*model_ir_se50.pth"):
        load_arcface(path)  # the configs' default id_weights: ${model.encoder_weights}


def test_published_sketch_and_segmentation_models_take_their_inputs(ros, tmp_path):  # noqa: F811
    """pSp's label_nc: 1 marks sketch models, fed sketches in [0, 1] (ToTensor, no Normalize); > 1 marks one-hot
    label-map models, whose `predict` inputs are class-index maps."""
    import numpy as np
    from PIL import Image

    from translate.deploy.inference import load_translator

    for label_nc, dataset in ((1, "celebs_sketch_to_face"), (5, "celebs_seg_to_face")):
        _, ckpt = make_checkpoint(ros, input_nc=label_nc, opts={"encoder_type": "GradualStyleEncoder",
                                                                 "dataset_type": dataset, "label_nc": label_nc,
                                                                 "input_nc": label_nc})
        torch.save(ckpt, tmp_path / f"{dataset}.pt")
        bundle = tmp_path / dataset
        assert cli.main(["import", "--from", "psp", "--weights", str(tmp_path / f"{dataset}.pt"),
                         "--out", str(bundle)]) == 0
        t = load_translator(bundle)
        if label_nc == 1:
            assert t.label_nc == 0 and (t.in_lo, t.in_hi) == (0.0, 1.0) and (t.lo, t.hi) == (-1.0, 1.0)
            white = t.from_array(np.full((32, 32), 255, np.uint8))
            assert white.shape == (1, 32, 32) and torch.all(white == 1.0)  # white is 1 (would be 1 in [-1, 1] too)
            black = t.from_array(np.zeros((32, 32), np.uint8))
            assert torch.all(black == 0.0)  # black is 0, not -1
            with pytest.raises(ValueError, match=r"input range \[0, 1\]"):
                t.from_tensor(torch.full((1, 32, 32), -1.0))
        else:
            assert t.label_nc == 5
            maps = tmp_path / f"{dataset}_maps"
            maps.mkdir()
            Image.fromarray(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32) % 5, mode="L").save(maps / "a.png")
            assert cli.main(["predict", "--model", str(bundle), "--input", str(maps), "--output",
                             str(tmp_path / "out")]) == 0
            assert (tmp_path / "out" / "a.png").is_file()


def test_ranger_is_radam_with_lookahead():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3))
    start = w.detach().clone()
    opt = Ranger([w], lr=0.1, k=2, alpha=0.5, use_gc=False)
    radam = torch.optim.RAdam([w2 := torch.nn.Parameter(start.clone())], lr=0.1, betas=(0.95, 0.999), eps=1e-5)
    for step in range(2):
        for p, o in ((w, opt), (w2, radam)):
            o.zero_grad()
            (p ** 2).sum().backward()
            o.step()
    # after k=2 fast steps the weights are pulled halfway back to where they started
    torch.testing.assert_close(w.detach(), start + 0.5 * (w2.detach() - start))
    state = opt.state_dict()
    assert "slow" in state["state"][0]


def test_decoder_fine_tuning_centralises_gradients_as_psp_does(prior):
    """train_decoder: Ranger centralises each decoder gradient as pSp does on rosinality's layouts: one mean over
    the whole tensor for modulated conv weights, the constant input and the ToRGB bias; per row for linear weights;
    none for other biases. RAdam's first step is plain momentum SGD, so it shows the centralised gradient itself."""
    m = module(prior, train_decoder=True)
    opt = m.configure_optimizers()
    groups = {id(p): g.get("gc_whole", False) for g in opt.param_groups for p in g["params"]}
    dec = dict(m.net.decoder.named_parameters())
    assert groups[id(dec["synthesis.b4.const"])] and groups[id(dec["synthesis.b8.conv0.weight"])]
    assert groups[id(dec["synthesis.b8.torgb.bias"])] and groups[id(dec["synthesis.b8.torgb.weight"])]
    assert not groups[id(dec["synthesis.b8.conv0.affine.weight"])] and not groups[id(dec["synthesis.b8.conv0.bias"])]
    assert not any(groups[id(p)] for p in m.net.encoder.parameters())
    torch.manual_seed(0)
    before = {k: p.detach().clone() for k, p in dec.items()}
    grads = {k: torch.randn_like(p) + 1.0 for k, p in dec.items()}
    for k, p in dec.items():
        p.grad = grads[k].clone()
    opt.step()
    lr = opt.param_groups[0]["lr"]
    for name, centred in (("synthesis.b8.conv0.weight", grads["synthesis.b8.conv0.weight"]
                           - grads["synthesis.b8.conv0.weight"].mean()),
                          ("synthesis.b8.torgb.bias", grads["synthesis.b8.torgb.bias"]
                           - grads["synthesis.b8.torgb.bias"].mean()),
                          ("synthesis.b8.conv0.affine.weight", grads["synthesis.b8.conv0.affine.weight"]
                           - grads["synthesis.b8.conv0.affine.weight"].mean(1, keepdim=True)),
                          ("synthesis.b8.conv0.bias", grads["synthesis.b8.conv0.bias"])):
        torch.testing.assert_close(dec[name].detach(), before[name] - lr * centred, msg=name)


def test_moco_loss_loads_moco_v2_checkpoints_and_computes_as_the_reference(tmp_path):
    import torchvision
    from torch import nn
    from torch.nn import functional as F

    from nets.similarity import MocoLoss, load_moco

    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None).eval()
    for m in resnet.modules():  # non-trivial batch-norm statistics, so that eval mode matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    # the layout of moco_v2_800ep_pretrain.pt: query and key encoders with MLP heads, the queue, the optimizer
    sd = {f"module.encoder_q.{k}": v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    sd.update({"module.encoder_q.fc.0.weight": torch.randn(8, 2048), "module.encoder_q.fc.2.weight": torch.randn(4, 8),
               "module.encoder_k.conv1.weight": torch.randn(64, 3, 7, 7), "module.queue": torch.randn(4, 16)})
    path = tmp_path / "moco_v2_800ep_pretrain.pt"
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": sd, "optimizer": {}}, path)

    loss = MocoLoss(load_moco(str(path))).train()
    assert not loss.backbone.training
    y_hat = (torch.rand(2, 3, 40, 40) * 2 - 1).requires_grad_(True)
    y = torch.rand(2, 3, 40, 40) * 2 - 1
    value = loss(y_hat, y)
    value.backward()
    assert y_hat.grad.abs().sum() > 0 and all(p.grad is None for p in loss.backbone.parameters())

    # the reference: the ResNet without its classifier on nearest-resized [-1, 1] images, cosine of pooled features
    pooled = nn.Sequential(*list(resnet.children())[:-1])
    with torch.no_grad():
        a, b = (F.normalize(pooled(F.interpolate(t, size=224)).flatten(1), dim=1) for t in (y_hat, y))
    torch.testing.assert_close(value.detach(), (1 - (a * b).sum(1)).mean(), atol=1e-5, rtol=0)

    with pytest.raises(FileNotFoundError, match="model.moco_weights"):
        load_moco(None)
    with pytest.raises(FileNotFoundError, match="model.moco_weights: MoCo weights not found: .*nowhere.pt"):
        load_moco(str(tmp_path / "nowhere.pt"))
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="module.encoder_q"):
        load_moco(str(tmp_path / "other.pt"))
    (tmp_path / "pickled.pt").write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(ValueError, match="model.moco_weights"):
        load_moco(str(tmp_path / "pickled.pt"))


@pytest.mark.filterwarnings("ignore:.*randomly initialised")
@pytest.mark.filterwarnings("ignore:.*could not find the monitored key")
@pytest.mark.parametrize("noise", ["random", "const"])
def test_training_noise_is_configurable(prior, tmp_path, tiny_psp_config, monkeypatch, noise):
    seen = []
    decode = PSPNet.decode

    def recording(self, codes, noise_mode=None, feature=None):
        seen.append(noise_mode or self.noise_mode)
        return decode(self, codes, noise_mode, feature)

    monkeypatch.setattr(PSPNet, "decode", recording)
    cfg = tiny_psp_config(prior, tmp_path / "run", *SKETCH_RUN, "trainer.max_steps=2", f"model.train_noise={noise}",
                          "trainer.limit_val_batches=0")
    runner.fit(cfg)
    assert seen and set(seen) == {noise}  # every training decode (2 steps) used the configured noise
    with pytest.raises(ValueError, match="model.train_noise: expected random or const, got 'fixed'"):
        module(prior, train_noise="fixed")


@pytest.mark.filterwarnings("ignore:.*randomly initialised")
def test_bf16_mixed_precision_trains_and_translates(prior, tmp_path, tiny_psp_config):
    """`trainer.precision=bf16-mixed` (the GPU speed path of benchmarks/psp.py) runs through the encoder, the ref
    ops of the frozen prior and every loss network; bf16 autocast output stays near fp32."""
    cfg = tiny_psp_config(prior, tmp_path / "run", *SKETCH_RUN, "trainer.max_steps=2", "trainer.precision=bf16-mixed",
                          "model.w_norm_lambda=0.01", "data.toyfaces.n_train=4")  # one epoch: validated too
    trainer, mod = runner.fit(cfg)
    for k in ("train/l2", "train/lpips", "train/id", "train/w_norm", "train/loss", "val/loss", "val/psnr"):
        assert torch.isfinite(trainer.callback_metrics[k]), k
    assert all(p.dtype == torch.float32 for p in mod.parameters())  # mixed: the weights stay fp32
    net = mod.inference_net()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x)
    assert low.shape == ref.shape and torch.isfinite(low).all()
    assert (low.float() - ref).abs().mean() < 0.05 * ref.abs().mean() + 1e-3


@pytest.mark.filterwarnings("ignore:.*randomly initialised")
def test_stylegan3_decoder_trains_exports_and_translates(sg3_prior, tmp_path, tiny_psp_config):
    """pSp into a StyleGAN3 prior: the encoder predicts the generator's num_ws codes; fit, export (ONNX through the
    reference ops, with the parity gate), and the bundle's eager and ONNX translations agree."""
    from priors.loaders import load_prior

    n = load_prior(sg3_prior).num_ws
    cfg = tiny_psp_config(sg3_prior, tmp_path / "run", *SKETCH_RUN, "trainer.max_steps=2")
    trainer, mod = runner.fit(cfg)
    assert mod.net.n_styles == mod.net.encoder.n_styles == n == 5
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    bundle = tmp_path / "bundle"
    assert cli.main(["export", "--ckpt", str(tmp_path / "run" / "checkpoints" / "last.ckpt"),
                     "--out", str(bundle)]) == 0
    from translate.deploy.inference import load_translator

    eager, onnx = load_translator(bundle), load_translator(bundle, backend="onnx")
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    y = eager.translate_batch(x)
    assert y.shape == (2, 3, 32, 32) and torch.isfinite(y).all()
    torch.testing.assert_close(onnx.translate_batch(x), y, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="model.feature_res: needs a StyleGAN2 prior"):
        module(sg3_prior, feature_res=16)
