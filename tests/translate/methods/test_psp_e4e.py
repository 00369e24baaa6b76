"""e4e (encoder4editing) in the pSp method: the published checkpoint layout imported and run as the reference does
(tests/data/e4e: a small checkpoint in that layout and what omertov/encoder4editing computes from it, see
../shared/golden/README.md), the progressive schedule, the delta regulariser, the latent discriminator's losses and
R1 against the reference's numbers, a short fit with resume, and bundles without the discriminator."""
import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nets.psp import LatentCodesDiscriminator, PSPNet
from tests.helpers.psp_checkpoints import make_checkpoint
from safeio import ConfigError
from translate import cli
from translate.deploy.psp_checkpoint import PSPCheckpointError, load_psp_checkpoint
from translate.methods.psp import PSP, LatentCodesPool, PSPConfig, delta_loss, progressive_stage
from translate.methods.losses import d_logistic, g_nonsaturating, r1_penalty
from translate.train import runner

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "e4e")
CODES_ATOL, IMAGES_ATOL = 1e-4, 1e-3  # the README's tolerances (1 vs 2 CPU threads: 2e-5 and 1.5e-4)


@pytest.fixture(scope="module")
def golden():
    return torch.load(os.path.join(DATA, "e4e_small_outputs.pt"), weights_only=True)


# ---- the schedule ------------------------------------------------------------------------------------------------
def reference_steps(start, every, n_styles):
    """e4e's progressive_steps: [0, start, start + every, ...], one entry per stage 0 .. n_styles - 1."""
    steps, nxt = [0], start
    for _ in range(n_styles - 1):
        steps.append(nxt)
        nxt += every
    return steps


@pytest.mark.parametrize("start,every,n_styles", [(20000, 2000, 18), (300, 100, 10), (0, 1, 8)])
def test_progressive_stage_is_the_last_reference_step_reached(start, every, n_styles):
    steps = reference_steps(start, every, n_styles)
    assert len(steps) == n_styles and (n_styles != 18 or steps[-1] == 52000)
    for step in sorted({0, 1, start - 1, start, start + 1, *steps, *(s - 1 for s in steps), steps[-1] + 10**6}):
        if step < 0:
            continue
        want = max(i for i, s in enumerate(steps) if step >= s)  # how the reference resumes
        assert progressive_stage(step, start, every, n_styles) == want, step
    assert progressive_stage(10**6, None, None, n_styles) == n_styles - 1  # not progressive: every delta


# ---- losses against the reference's numbers ----------------------------------------------------------------------
def test_delta_and_latent_discriminator_terms_match_the_reference(golden):
    t = golden["training"]
    D = LatentCodesDiscriminator(512)
    D.load_state_dict(t["discriminator_state_dict"])  # the reference's keys mlp.0 .. mlp.6
    real_w, fake_w = t["real_w"], t["fake_w"]
    # the fake code is row 0 of the encoder's codes at stage 3 (no pool)
    torch.testing.assert_close(fake_w, golden["codes"]["3"][:, 0], atol=CODES_ATOL, rtol=0)
    # the real code is the mapping network's w: checked through the checkpoint's decoder in the slow test below
    real_pred, fake_pred = D(real_w), D(fake_w)
    torch.testing.assert_close(real_pred, t["d_real_pred"], atol=1e-5, rtol=0)
    torch.testing.assert_close(fake_pred, t["d_fake_pred"], atol=1e-5, rtol=0)
    torch.testing.assert_close(d_logistic(real_pred, fake_pred), t["d_loss"], atol=1e-5, rtol=0)
    assert abs(F.softplus(-real_pred).mean().item() - t["d_loss_dict"]["d_real_loss"]) < 1e-5
    real = real_w.clone().requires_grad_(True)
    r1 = r1_penalty(D(real), real, gamma=10.0)
    torch.testing.assert_close(r1, 10.0 / 2 * t["r1_penalty"], atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(r1 * 16, t["r1_final"], atol=1e-6, rtol=1e-4)  # d_reg_every 16
    assert r1.requires_grad  # double backward: R1 trains D

    # the encoder's terms at stage 3 (rows 0..3 judged, deltas 1..3) and at 18 (every row, no delta term)
    x = golden["input"]
    for stage in ("3", "18"):
        codes, image, ref = golden["codes"][stage], golden["image"][stage], t["encoder_loss"][stage]["loss_dict"]
        rows = codes[:, :4] if stage == "3" else codes
        adv = g_nonsaturating(D(rows.reshape(-1, 512)))
        assert abs(adv.item() - ref["encoder_discriminator_loss"]) < 1e-5, stage
        l2 = F.mse_loss(image, x)
        assert abs(l2.item() - ref["loss_l2"]) < 1e-4 * ref["loss_l2"], stage
        total = l2 + 0.1 * adv
        if stage == "3":
            for i in (1, 2, 3):  # one delta at a time: the sum over 1..i less the sum over 1..i-1
                one = delta_loss(codes, i) - delta_loss(codes, i - 1)
                assert abs(one.item() - ref[f"delta{i}_loss"]) < 1e-4 * ref[f"delta{i}_loss"], i
            delta = delta_loss(codes, 3)
            assert abs(delta.item() - ref["total_delta_loss"]) < 1e-4 * ref["total_delta_loss"]
            total = total + 2e-4 * delta
        assert abs(total.item() - ref["loss"]) < 1e-4 * ref["loss"], stage


def test_delta_loss_is_the_unsquared_norm_of_each_row_to_row_zero():
    codes = torch.zeros(2, 5, 4)
    codes[0, 1, 0], codes[1, 1, 1] = 3.0, 4.0  # row 1: norms 3 and 4 -> batch mean 3.5
    codes[:, 2] = torch.tensor([0.0, 6.0, 8.0, 0.0])  # row 2: 10 for both
    assert delta_loss(codes, 1).item() == pytest.approx(3.5)
    assert delta_loss(codes, 2).item() == pytest.approx(13.5)
    assert delta_loss(codes, 4).item() == pytest.approx(13.5)  # rows 3, 4 equal row 0
    assert delta_loss(codes, 0).item() == 0.0
    assert delta_loss(codes, 2, p=1).item() == pytest.approx(3.5 + 14.0)


def test_code_pool_fills_then_answers_with_stored_codes_half_of_the_time():
    torch.manual_seed(0)
    pool = LatentCodesPool(4)
    first = torch.arange(8.0).reshape(4, 2)
    assert torch.equal(pool.query(first), first)  # filling: the codes themselves
    # sample i has rows (100 + i + r, 100 + i + r) for r = 0, 1, 2: a value tells which sample and row it came from
    rows = torch.stack([torch.full((3, 2), 100.0 + 3 * i) + torch.arange(3.0)[:, None] for i in range(400)])
    out = pool.query(rows)
    assert out.shape == (400, 2)
    source = (out[:, 0] - 100).div(3, rounding_mode="floor")  # the sample an output came from (< 0: `first`)
    own = source == torch.arange(400)
    assert 0.4 < own.float().mean() < 0.6  # about half are the sample's own (random) row
    assert (source[~own] < torch.arange(400)[~own]).all()  # the others are codes stored before
    assert (out[:, 0] < 8).any()  # the first codes came back out of the pool
    assert len({int(v) % 3 for v in out[own, 0] - 100}) == 3  # any of the rows


# ---- training: a short fit, resume, export -------------------------------------------------------------------------
# configs/psp/toyfaces_e4e.yaml shrunk: 32-px faces and prior, tiny widths, a schedule of a few steps
E4E_RUN = ["model.channels=[4,8,8,16]", "model.input_size=32", "model.loss_size=32", "model.progressive_start=1",
           "model.progressive_step_every=2", "model.w_pool_size=3", "model.d_reg_interval=2",
           "data.toyfaces.size=32", "data.toyfaces.n_train=4", "data.toyfaces.n_val=2", "data.batch_size=2",
           "trainer.enable_progress_bar=false", "logger.image_every_n_steps=0"]


def toy_e4e_config(prior, run_dir, *extra):
    from translate.train.config import load_config

    cfg = load_config([Path("configs/psp/toyfaces_e4e.yaml")],
                      [f"model.prior={prior}", f"run_dir={run_dir}", *E4E_RUN, *extra])
    m = cfg.model  # the shipped recipe: e4e's encoder, delta term, latent D with its pool, R1 gamma 10
    assert m.encoder_type == "Encoder4Editing" and m.delta_norm_lambda == 2e-4 and m.use_w_pool
    assert m.w_discriminator_lambda == 0.1 and m.w_discriminator_lr == 2e-5 and m.r1_gamma == 10
    return cfg


@pytest.mark.filterwarnings("ignore:.*randomly initialised")
def test_toy_config_fits_resumes_at_the_stage_of_its_step_and_exports_without_the_discriminator(prior, tmp_path):
    run = tmp_path / "run"
    trainer, mod = runner.fit(toy_e4e_config(prior, run, "trainer.max_steps=6"))  # 3 batches
    assert mod.n_steps == 3 and trainer.global_step == 6  # encoder + latent D per batch (R1 not counted)
    assert mod.net.encoder.progressive_stage == progressive_stage(3, 1, 2, 8) == 2
    metrics = trainer.callback_metrics
    for k in ("l2", "delta", "w_adv", "D_w", "D_w_r1", "loss"):
        assert torch.isfinite(metrics[f"train/{k}"]), k
    ckpt = run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True, map_location="cpu")
    assert any(k.startswith("net_w_d.mlp.6") for k in state["state_dict"])  # the latent D is kept for resume
    assert len(state["optimizer_states"]) == 2

    # resumed, the stage follows the restored step count (from step 0 it would be stage 1 after two batches)
    trainer, mod = runner.fit(toy_e4e_config(prior, run, "trainer.max_steps=10"), resume="last")
    assert mod.n_steps == 5 and mod.net.encoder.progressive_stage == progressive_stage(5, 1, 2, 8) == 3

    # what `export` writes (weights.safetensors = the state dict of export_spec's net; translator.json its meta),
    # rebuilt as the bundle's eager backend does (the ONNX path is pSp's, tested in test_psp.py)
    from nets.psp import build_psp_net

    _, trained = runner.load_run(ckpt)
    net, meta = trained.export_spec()
    assert not any("mlp" in k or "w_d" in k for k in net.state_dict())  # no discriminator in bundles
    assert meta["psp"]["encoder"]["name"] == "Encoder4Editing"
    rebuilt = build_psp_net(json.loads(json.dumps(meta["psp"]))).eval()
    rebuilt.load_state_dict(net.state_dict())
    assert rebuilt.encoder.progressive_stage == net.encoder.progressive_stage == 7  # every delta, as a loaded e4e
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out = rebuilt(x)
        torch.testing.assert_close(out, net(x), atol=1e-5, rtol=0)
        trained.net.encoder.progressive_stage = 2  # the training stage gives another output
        assert not torch.allclose(trained.net.decode(trained.net.encode(x), noise_mode="const"), out, atol=1e-3)


def test_e4e_options_are_checked(prior):
    base = dict(prior=str(prior), channels=[4, 8, 8, 16], input_size=32, loss_size=32, lpips_weights="random",
                id_lambda=0)
    with pytest.raises(ConfigError, match="model.progressive_start needs model.encoder_type Encoder4Editing") as e:
        PSP(model=PSPConfig(**base, progressive_start=10, progressive_step_every=5))
    assert e.value.key == "model.progressive_start"
    with pytest.raises(ConfigError, match="model.progressive_step_every a positive number of steps, got None"):
        PSP(model=PSPConfig(**base, encoder_type="Encoder4Editing", progressive_start=10))
    with pytest.raises(ConfigError, match="w_discriminator_lambda and model.adv_lambda are both > 0"):
        PSP(model=PSPConfig(**base, w_discriminator_lambda=0.1, adv_lambda=0.1))


# ---- import --------------------------------------------------------------------------------------------------------
def test_import_from_e4e_refuses_a_psp_checkpoint(ros, tmp_path, capsys):
    from translate.deploy.importers import import_psp

    _, ckpt = make_checkpoint(ros, "GradualStyleEncoder")
    torch.save(ckpt, tmp_path / "psp.pt")
    with pytest.raises(PSPCheckpointError, match=r"not an e4e checkpoint \(opts\['encoder_type'\] is "
                                                 r"'GradualStyleEncoder'.*--from psp"):
        import_psp(tmp_path / "psp.pt", tmp_path / "b", source="e4e")
    assert cli.main(["import", "--from", "e4e", "--weights", str(tmp_path / "psp.pt"), "--out",
                     str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not an e4e checkpoint" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_e4e_checkpoint_with_distinct_latent_avg_rows_and_stale_size_imports(ros, tmp_path):
    enc, ckpt = make_checkpoint(ros, "Encoder4Editing")
    ckpt["latent_avg"] = ckpt["latent_avg"] + torch.randn(8, 1)  # 8 distinct rows, as the golden file's
    ckpt["opts"]["stylegan_size"] = 1024  # stale: the keys say 32 px, 8 styles
    torch.save(ckpt, tmp_path / "e4e.pt")
    psp = load_psp_checkpoint(tmp_path / "e4e.pt")
    assert psp.encoder_spec["name"] == "Encoder4Editing" and psp.decoder.num_ws == 8
    assert "stale" in psp.backfilled["stylegan_size"] and "distinct rows" in psp.backfilled["latent_avg"]
    torch.testing.assert_close(psp.decoder.mapping.w_avg, ckpt["latent_avg"].mean(0))
    net = PSPNet(psp.build_encoder(), psp.decoder, psp.latent_avg).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():  # rows added as stored
        torch.testing.assert_close(net.encode(x), enc.eval()(x) + ckpt["latent_avg"], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_golden_e4e_checkpoint_reproduces_the_reference_codes_and_images(golden):
    """The 512-px golden checkpoint (IR-SE50 encoder, 16 heads) through our reader: codes at stages 18, 3, 7, 0
    (the reference's Inference, Delta3, Delta7, WTraining), the face_pool images and the full-size output."""
    ckpt = load_psp_checkpoint(os.path.join(DATA, "e4e_small_reference.pt"))
    assert ckpt.encoder_spec["name"] == "Encoder4Editing" and ckpt.decoder.img_resolution == 512
    assert ckpt.latent_avg.shape == (16, 512)  # distinct rows, kept as stored
    net = PSPNet(ckpt.build_encoder(), ckpt.decoder, ckpt.latent_avg, True, resize=256, noise_mode="const").eval()
    assert net.encoder.progressive_stage == 15  # a loaded model adds every delta
    x = golden["input"]
    with torch.no_grad():
        for stage in golden["progressive_stages"]:
            net.encoder.progressive_stage = stage
            codes = net.encode(x)
            torch.testing.assert_close(codes - net.latent_avg, golden["encoder_out"][str(stage)],
                                       atol=CODES_ATOL, rtol=0)
            torch.testing.assert_close(codes, golden["codes"][str(stage)], atol=CODES_ATOL, rtol=0)
            if str(stage) in golden["image"]:
                torch.testing.assert_close(net.decode(codes), golden["image"][str(stage)], atol=IMAGES_ATOL, rtol=0)
        net.resize = None
        a, b = golden["image_full_crop"]["rows_cols"]
        full = net.decode(golden["codes"]["18"])[:, :, a:b, a:b]
        torch.testing.assert_close(full, golden["image_full_crop"]["18"], atol=IMAGES_ATOL, rtol=0)
        w = ckpt.decoder.mapping(golden["z"], skip_w_avg_update=True)[:, 0]  # the latent D's real codes
        torch.testing.assert_close(w, golden["w_from_z"], atol=1e-5, rtol=0)
