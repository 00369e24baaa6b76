"""CycleGAN: one training step against the reference implementation, the image pool, and the whole path through
the CLI on generated 32x32 unpaired data (fit, resume, validate against the hidden truth, export both directions,
predict)."""
import subprocess

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader

from translate.deploy.checkpoints import load_checkpoint
from translate.cli import main
from translate.methods.cyclegan import CycleGAN, CycleGANConfig, ImagePool
from translate.deploy.inference import load_translator
from translate.methods.losses import GAN_MODES

LOSSES = ("G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B", "G", "D_A", "D_B")
NETS = {"G_A": "net_g_a", "G_B": "net_g_b", "D_A": "net_d_a", "D_B": "net_d_b"}


def run_steps(module, batches):
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=2 * len(batches), max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    return trainer


# ---- the reference step ------------------------------------------------------------------------------------------
def test_one_step_matches_reference(junyanz_golden, adam_step_matches, biases_before_instance_norm):
    g = junyanz_golden("cyclegan_step.pt")
    c = g["config"]
    assert c["model"] == "cycle_gan" and c["mode"] == "train"
    module = CycleGAN(model=CycleGANConfig(
        netG=c["netG"], ngf=c["ngf"], netD=c["netD"], ndf=c["ndf"], norm=c["norm"], use_dropout=c["use_dropout"],
        gan_mode=c["gan_mode"], lambda_A=c["lambda_A"], lambda_B=c["lambda_B"], lambda_identity=c["lambda_identity"],
        pool_size=c["pool_size"], lr=c["lr"], beta1=c["betas"][0], beta2=c["betas"][1],
    ))
    for ref, ours in NETS.items():
        getattr(module, ours).load_state_dict(g["state_dict_before"][ref])
    real_a, real_b = g["input"]["real_A"], g["input"]["real_B"]

    with torch.no_grad():  # the forward pass, before any update
        out = {"fake_B": module.net_g_a(real_a), "fake_A": module.net_g_b(real_b),
               "idt_A": module.net_g_a(real_b), "idt_B": module.net_g_b(real_a)}
        out["rec_A"], out["rec_B"] = module.net_g_b(out["fake_B"]), module.net_g_a(out["fake_A"])
    for k, v in out.items():
        torch.testing.assert_close(v, g["output"][k], atol=1e-5, rtol=0, msg=k)

    trainer = run_steps(module, [{"A": real_a, "B": real_b, "A_path": ["a0", "a1"]}])
    assert trainer.global_step == 2  # one G and one D optimizer step
    metrics = trainer.callback_metrics
    for name in LOSSES:
        assert metrics[f"train/{name}"].item() == pytest.approx(g["losses"][name], abs=1e-5, rel=1e-6), name
    for ref, ours in NETS.items():
        # Unlike pix2pix's, these tiny nets (ngf 8) have a few 1e-4 of their weights on near-cancelling gradients (four
        # L1 terms); a wrong loss, weight or step order changes most weights.
        net = getattr(module, ours)
        adam_step_matches(net.state_dict(), g["state_dict_after"][ref], c["lr"], ref, max_fraction=1e-3,
                          noise_keys=biases_before_instance_norm(net))
    assert len(module.fake_a_pool) == len(module.fake_b_pool) == 2  # the pool is filling


def test_loss_weights_and_gan_modes():
    torch.manual_seed(0)
    batch = {"A": torch.rand(2, 3, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1, "A_path": ["a", "b"]}
    for mode in GAN_MODES:
        m = CycleGAN(model=CycleGANConfig(netG="resnet", n_blocks=1, ngf=4, ndf=4, gan_mode=mode, lambda_identity=0.0))
        nets0 = {n: [p.detach().clone() for p in getattr(m, n).parameters()] for n in NETS.values()}
        metrics = run_steps(m, [batch]).callback_metrics
        assert metrics["train/idt_A"].item() == 0 and metrics["train/idt_B"].item() == 0
        assert all(torch.isfinite(v) for v in metrics.values()), mode
        parts = sum(metrics[f"train/{k}"] for k in ("G_A", "G_B", "cycle_A", "cycle_B"))
        assert metrics["train/G"].item() == pytest.approx(parts.item(), rel=1e-6)
        for n, before in nets0.items():
            assert any(not torch.equal(a, b) for a, b in zip(before, getattr(m, n).parameters())), (mode, n)


def test_validation_without_truth_logs_grids_but_no_scores(tmp_path):
    torch.manual_seed(0)
    m = CycleGAN(model=CycleGANConfig(netG="resnet", n_blocks=1, ngf=4, ndf=4))
    m.image_dir = tmp_path
    batch = {"A": torch.rand(2, 3, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1, "A_path": ["a", "b"],
             "paired": torch.tensor([False, False])}
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.warns(UserWarning, match="no true counterparts"):
        (res,) = trainer.validate(m, DataLoader([batch], batch_size=None), verbose=False)
    assert "val/psnr" not in res
    assert len(list(tmp_path.glob("val_images_A_*.png"))) == len(list(tmp_path.glob("val_images_B_*.png"))) == 1
    batch["paired"] = torch.tensor([True, True])
    (res,) = trainer.validate(m, DataLoader([batch], batch_size=None), verbose=False)
    assert 0 < res["val/psnr"] < 60


def test_bad_options():
    with pytest.raises(ValueError, match="lambda_identity"):
        CycleGAN(model=CycleGANConfig(netG="resnet", n_blocks=1, ngf=4, ndf=4), input_nc=1, output_nc=3)
    CycleGAN(model=CycleGANConfig(netG="resnet", n_blocks=1, ngf=4, ndf=4, lambda_identity=0), input_nc=1, output_nc=3)
    with pytest.raises(ValueError, match="gan_mode"):
        CycleGAN(model=CycleGANConfig(gan_mode="wgan"))
    with pytest.raises(ValueError, match="pool_size"):
        ImagePool(-1)


# ---- the image pool ----------------------------------------------------------------------------------------------
def images(start, n):
    """n distinct (1, 1, 2, 2) images whose value is their id."""
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()


def ids(t):
    return [int(v) for v in t[:, 0, 0, 0]]


def test_pool_size_zero_returns_the_input():
    pool = ImagePool(0)
    x = images(0, 3).requires_grad_(True)
    y = pool.query(x)
    assert torch.equal(y, x) and not y.requires_grad and len(pool) == 0


def test_pool_fills_then_swaps_half_the_time():
    pool = ImagePool(4)
    assert ids(pool.query(images(0, 3))) == [0, 1, 2]  # filling: returned as they come
    assert ids(pool.query(images(3, 1))) == [3] and len(pool) == 4  # full now
    torch.manual_seed(0)
    returned, new = [], 100
    for _ in range(400):
        returned += ids(pool.query(images(new, 1)))
        new += 1
        stored = sorted(ids(torch.cat(pool.images)))
        assert len(stored) == 4 and len(set(stored)) == 4  # the pool keeps its size and never duplicates
    old = sum(r != 100 + i for i, r in enumerate(returned))
    assert 160 < old < 240  # about half the answers are stored images (binomial(400, 1/2): +-4 sigma)


def test_pool_answer_follows_torch_seed():
    def run(seed):
        pool = ImagePool(3)
        pool.query(images(0, 3))
        torch.manual_seed(seed)
        return ids(pool.query(images(10, 8))), sorted(ids(torch.cat(pool.images)))

    assert run(1) == run(1)
    assert any(run(1) != run(s) for s in (2, 3, 4))


def test_pool_semantics_step_by_step():
    """Replays the draws: p < 1/2 -> a stored image comes back and the new one replaces it; else the new one."""
    pool = ImagePool(3)
    pool.query(images(0, 3))
    torch.manual_seed(7)
    draws = torch.Generator().manual_seed(7)
    stored = [0, 1, 2]
    for new in range(10, 30):
        got = ids(pool.query(images(new, 1)))[0]
        if float(torch.rand((), generator=draws)) < 0.5:
            i = int(torch.randint(3, (), generator=draws))
            assert got == stored[i]
            stored[i] = new
        else:
            assert got == new
        assert ids(torch.cat(pool.images)) == stored


# ---- the whole path through the CLI on generated 32x32 unpaired data ---------------------------------------------
TINY = [
    "method=cyclegan", "data.kind=synthetic_unpaired", "data.synthetic.size=32", "data.synthetic.n_train=8",
    "data.synthetic.n_val=4", "data.batch_size=2", "data.num_workers=0", "data.preprocess=none", "model.netG=resnet",
    "model.n_blocks=1", "model.ngf=4", "model.ndf=4", "model.pool_size=3", "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "logger.wandb.mode=disabled",
    "logger.image_every_n_steps=3", "export.example_size=32",
]
STEPS_PER_EPOCH = 8  # 4 batches x (one G + one D optimizer step)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "cyclegan"
    assert main(["fit", *TINY, f"run_dir={run_dir}", "trainer.max_epochs=2"]) == 0
    return run_dir


def test_fit_writes_losses_grids_and_pools(run):
    last = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 2 * STEPS_PER_EPOCH
    assert [int(s["state"][0]["step"]) for s in last["optimizer_states"]] == [8, 8]
    assert {k: v.shape[0] for k, v in last["image_pools"].items()} == {"fake_A": 3, "fake_B": 3}
    assert list((run / "checkpoints").glob("best-*.ckpt"))
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {f"train/{k}" for k in LOSSES} | {"val/psnr", "val/ssim"} <= set(header)
    for grid in ("val_images_A", "val_images_B", "train_images"):
        assert list((run / "images").glob(f"{grid}_*.png")), grid


def test_resume_continues_with_optimizer_schedule_and_pools(run, tmp_path):
    copy = tmp_path / "resumed"
    subprocess.run(["cp", "-r", str(run), str(copy)], check=True)
    assert main(["fit", *TINY, f"run_dir={copy}", "trainer.max_epochs=3", "--resume", "last"]) == 0
    last = load_checkpoint(copy / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 3 * STEPS_PER_EPOCH
    assert [int(s["state"][0]["step"]) for s in last["optimizer_states"]] == [12, 12]
    assert [s["last_epoch"] for s in last["lr_schedulers"]] == [3, 3]
    assert last["image_pools"]["fake_B"].shape[0] == 3


def test_ddp_two_cpu_processes(tmp_path, fit_ddp):
    last = fit_ddp(tmp_path / "ddp", *TINY, "trainer.max_epochs=1")
    # 8 images over 2 processes x batch 2 = 2 batches per process, each one G and one D step
    assert last["global_step"] == 4
    assert last["image_pools"]["fake_B"].shape[0] == 3  # each process keeps its own pool; rank 0's is saved


def test_validate_scores_g_a_against_the_hidden_truth(run, tmp_path):
    from datamodules.unaligned import make_scene
    from translate.train.runner import evaluate, load_run

    ckpt = run / "checkpoints" / "last.ckpt"
    (res,) = evaluate("validate", ckpt)
    _, module = load_run(ckpt)
    day, night = zip(*(make_scene(0, "val", i, 32) for i in range(4)))

    def tensor(images):
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1

    with torch.no_grad():
        fake = ((module.inference_net("AtoB")(tensor(day)) + 1) / 2).clamp(0, 1)
    mse = ((fake - (tensor(night) + 1) / 2) ** 2).mean(dim=(1, 2, 3))
    assert res["val/psnr"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), abs=1e-3)
    assert 0 < res["val/ssim"] <= 1


    # --save-images: the reference test script's six kinds of images, each sample named after its source
    out = tmp_path / "results"
    evaluate("validate", ckpt, save_images=out)
    kinds = ("real_A", "fake_B", "rec_A", "real_B", "fake_A", "rec_B")
    assert sorted(p.name for p in out.iterdir()) == sorted(kinds)
    for kind in kinds:
        assert len(list((out / kind).iterdir())) == 4, kind
    first = sorted((out / "fake_B").iterdir())[0]
    saved = torch.from_numpy(np.array(Image.open(first))).permute(2, 0, 1).float() / 255
    assert (saved - fake[0]).abs().max() <= 1 / 255 + 1e-6


def test_export_both_directions_then_predict(run, tmp_path):
    from translate.train.runner import load_run

    bundles = tmp_path / "bundles"
    ckpt = str(run / "checkpoints" / "last.ckpt")
    assert main(["export", "--ckpt", ckpt, "--out", str(bundles), "--direction", "both"]) == 0
    _, module = load_run(ckpt)
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    for direction, net in (("AtoB", module.net_g_a), ("BtoA", module.net_g_b)):
        tr = load_translator(bundles / direction, backend="onnx")
        assert tr.meta["direction"] == direction and tr.meta["method"] == "cyclegan"
        assert tr.meta["parity"]["max_abs_diff"] <= tr.meta["parity"]["atol"]
        with torch.no_grad():
            torch.testing.assert_close(tr.translate_batch(x), net.eval()(x), atol=1e-4, rtol=0)

    nights = tmp_path / "nights"
    nights.mkdir()
    from datamodules.unaligned import make_scene

    for i in range(3):
        Image.fromarray(make_scene(5, "val", i, 32)[1]).save(nights / f"n{i}.png")
    out = tmp_path / "days"
    assert main(["predict", "--model", str(bundles / "BtoA"), "--input", str(nights), "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["n0.png", "n1.png", "n2.png"]
    assert np.array(Image.open(out / "n0.png")).shape == (32, 32, 3)

    assert module.export_spec()[1]["direction"] == "AtoB"  # what `export` writes without --direction
    assert main(["export", "--ckpt", ckpt, "--out", str(bundles), "--direction", "both"]) == 2  # exists
    # all or nothing: a BtoA folder holding a user's file stops the export before AtoB is replaced
    atob = {p.name: p.stat().st_mtime_ns for p in (bundles / "AtoB").iterdir()}
    (bundles / "BtoA" / "photo.png").write_bytes(b"the user's")
    assert main(["export", "--ckpt", ckpt, "--out", str(bundles), "--direction", "both", "--overwrite"]) == 2
    assert {p.name: p.stat().st_mtime_ns for p in (bundles / "AtoB").iterdir()} == atob  # not rewritten
    assert (bundles / "BtoA" / "photo.png").read_bytes() == b"the user's"


def test_bad_unaligned_layout_is_a_clear_error(tmp_path, capsys):
    for side in ("trainA", "testA", "testB"):
        (tmp_path / side).mkdir()
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / side / "0.png")
    args = ["fit", *TINY, "data.kind=unaligned", f"data.root={tmp_path}", f"run_dir={tmp_path}/r"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "trainB/" in err and "data.root" in err
    (tmp_path / "trainB").mkdir()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no images" in err and "trainB" in err


def test_import_reference_cyclegan_generator(tmp_path):
    """A zoo CycleGAN generator (resnet_9blocks, instance norm; old files carry InstanceNorm running stats) becomes a
    bundle that reproduces it."""
    from nets import build_generator

    torch.manual_seed(0)
    net = build_generator("resnet_9blocks", 3, 3, ngf=8, norm="instance").eval()
    sd = dict(net.state_dict())
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.InstanceNorm2d):  # what PyTorch < 0.4 saved for InstanceNorm layers
            sd[f"{name}.running_mean"] = torch.zeros(m.num_features)
            sd[f"{name}.running_var"] = torch.ones(m.num_features)
    torch.save(sd, tmp_path / "latest_net_G_A.pth")
    out = tmp_path / "bundle"
    assert main(["import", "--from", "junyanz", "--weights", str(tmp_path / "latest_net_G_A.pth"), "--out", str(out),
                 "--size", "32"]) == 0
    tr = load_translator(out, backend="onnx")
    assert tr.meta["generator"]["n_blocks"] == 9 and tr.meta["generator"]["norm"] == "instance"
    assert tr.meta["method"] == "cyclegan"
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(tr.translate_batch(x), net(x), atol=1e-4, rtol=0)


def test_pools_round_trip_through_a_checkpoint():
    m = CycleGAN(model=CycleGANConfig(netG="resnet", n_blocks=1, ngf=4, ndf=4, pool_size=4))
    m.fake_a_pool.query(images(0, 3))
    ckpt = {}
    m.on_save_checkpoint(ckpt)
    assert ckpt["image_pools"]["fake_B"] is None  # empty pools save as None
    resumed = CycleGAN(model=CycleGANConfig(netG="resnet", n_blocks=1, ngf=4, ndf=4, pool_size=4))
    resumed.on_load_checkpoint(ckpt)
    assert ids(torch.cat(resumed.fake_a_pool.images)) == [0, 1, 2] and len(resumed.fake_b_pool) == 0
    resumed.on_load_checkpoint({})  # a checkpoint without pools (e.g. written before they were saved)
    assert len(resumed.fake_a_pool) == 0
