"""End to end through the CLI: fit on generated 32x32 data, resume, validate, export, predict; bad input."""
import csv
import signal
import subprocess
import warnings
import time

import numpy as np
import pytest
from PIL import Image

from translate.deploy.checkpoints import load_checkpoint
from translate.cli import main

TINY = [
    "data.kind=synthetic", "data.synthetic.size=32", "data.synthetic.n_train=8", "data.synthetic.n_val=4",
    "data.batch_size=2", "data.num_workers=0", "data.preprocess=none", "model.netG=unet", "model.num_downs=5",
    "model.ngf=4", "model.ndf=4", "model.use_dropout=false", "model.test_mode=batchstats",
    "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
    "logger.wandb.mode=disabled", "logger.image_every_n_steps=3",
    "export.example_size=32",
]
STEPS_PER_EPOCH = 8  # 4 batches x (one D + one G optimizer step)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "pix2pix"
    assert main(["fit", *TINY, f"run_dir={run_dir}", "trainer.max_epochs=2"]) == 0
    return run_dir


def adam_steps(ckpt):
    return [int(s["state"][0]["step"]) for s in ckpt["optimizer_states"]]


def test_fit_writes_the_run_directory(run):
    assert (run / "config.yaml").read_text().count("num_downs: 5") == 1
    last = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 2 * STEPS_PER_EPOCH and adam_steps(last) == [8, 8]
    assert last["run_config"]["model"]["ngf"] == 4
    assert list((run / "checkpoints").glob("best-*.ckpt"))
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    assert any(r.get("val/psnr") for r in rows) and any(r.get("train/G_L1") for r in rows)
    assert list((run / "images").glob("val_images_*.png")) and list((run / "images").glob("train_images_*.png"))


def test_resume_continues_with_optimizer_and_schedule_state(run, tmp_path):
    copy = tmp_path / "resumed"
    subprocess.run(["cp", "-r", str(run), str(copy)], check=True)
    metrics = copy / "csv" / "metrics.csv"
    before = list(csv.DictReader(open(metrics)))
    with open(metrics, "a") as f:  # a row logged after last.ckpt was written (a crash before the next save)
        f.write(",".join({"epoch": "7", "step": "99"}.get(k, "") for k in before[0]) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["fit", *TINY, f"run_dir={copy}", "trainer.max_epochs=3", "--resume", "last"]) == 0
    # the resumed run's own checkpoint folder is expected to be there: no "exists and is not empty" warning
    assert not [str(w.message) for w in caught if "exists and is not empty" in str(w.message)]
    last = load_checkpoint(copy / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 3 * STEPS_PER_EPOCH
    assert adam_steps(last) == [12, 12]  # continued, not restarted
    assert [s["last_epoch"] for s in last["lr_schedulers"]] == [3, 3]
    # the metrics of the first two epochs are kept (Lightning's CSV logger deletes them), the stray row is not
    after = list(csv.DictReader(open(metrics)))
    assert [r["step"] for r in after[:len(before)]] == [r["step"] for r in before]
    assert {r["epoch"] for r in after if r.get("val/psnr")} == {"0", "1", "2"}
    assert not any(r["epoch"] == "7" for r in after)


# how the interrupted run ended: stopped by trainer.max_steps (mid-epoch, at the epoch's end) or max_epochs, or
# crashed after a checkpoint.every_n_train_steps save (mid-epoch, after the epoch's last minibatch); then the
# overrides of the whole run and of the resumed one. 4 minibatches per epoch, 2 optimizer steps each.
STEPS_14 = ["trainer.max_steps=14"]
INTERRUPTIONS = {"max_steps mid-epoch": (["trainer.max_steps=6"], None, STEPS_14),
                 "max_steps at epoch end": (["trainer.max_steps=8"], None, STEPS_14),
                 "max_epochs": (["trainer.max_epochs=1"], None, ["trainer.max_epochs=2"]),
                 "max_steps at the end of an epoch limited to 3 minibatches": (
                     ["trainer.limit_train_batches=3", "trainer.max_steps=6"], None,
                     ["trainer.limit_train_batches=3", *STEPS_14]),
                 "crash mid-epoch": (["checkpoint.every_n_train_steps=3"], ("crash", 8), STEPS_14),
                 "crash after the epoch's last minibatch": (["checkpoint.every_n_train_steps=4"], ("crash", 10),
                                                            STEPS_14),
                 "crash after the last minibatch of an epoch limited to 3": (
                     ["checkpoint.every_n_train_steps=3"], ("crash", 8), ["trainer.limit_train_batches=3", *STEPS_14]),
                 # SIGTERM during minibatch 3: Lightning stops after it, and last.ckpt is saved there
                 "SIGTERM mid-epoch": (["checkpoint.every_n_train_steps=100"], ("sigterm", 4), STEPS_14)}


@pytest.mark.parametrize("interruption", INTERRUPTIONS)
def test_a_resumed_run_repeats_the_uninterrupted_one(tmp_path, monkeypatch, capsys, interruption):
    """Shuffled data and dropout: the resumed run draws the rest of the interrupted epoch's order (skipping the
    minibatches done) and the same random numbers, so it ends with the weights of a run that was never stopped."""
    import torch

    from translate.methods.pix2pix import Pix2Pix

    common = [*TINY, "model.use_dropout=true", "checkpoint.monitor=null", "logger.image_every_n_steps=0"]
    cut, crash_at, whole = INTERRUPTIONS[interruption]  # crash_at: (crash | sigterm, at global step) or None
    assert main(["fit", *common, f"run_dir={tmp_path}/whole", *whole]) == 0
    if crash_at is not None:
        how, at = crash_at
        step = Pix2Pix.training_step

        def interrupted_step(self, batch, batch_idx):
            if self.global_step == at and how == "crash":
                raise RuntimeError("simulated crash")
            if self.global_step == at:  # what Lightning's SIGTERM handler does
                self.trainer._signal_connector.received_sigterm = True
            return step(self, batch, batch_idx)

        monkeypatch.setattr(Pix2Pix, "training_step", interrupted_step)
        if how == "crash":
            with pytest.raises(RuntimeError, match="simulated crash"):
                main(["fit", *common, f"run_dir={tmp_path}/cut", *whole, *cut])
        else:
            assert main(["fit", *common, f"run_dir={tmp_path}/cut", *whole, *cut]) == 143
            assert "stopped by SIGTERM" in capsys.readouterr().err
            assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.ckpt")["global_step"] == at + 2
        monkeypatch.setattr(Pix2Pix, "training_step", step)
    else:
        assert main(["fit", *common, f"run_dir={tmp_path}/cut", *cut]) == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["fit", *common, f"run_dir={tmp_path}/cut", *whole, "--resume", "last"]) == 0
    assert not [w for w in caught if "not resumable" in str(w.message)]
    if interruption == "crash mid-epoch":  # saved after minibatch 3 (step 6)
        assert "at step 6: epoch 0 of the data goes on after its minibatch 3 (6 images)" in capsys.readouterr().out
    whole, resumed = (load_checkpoint(tmp_path / run / "checkpoints" / "last.ckpt") for run in ("whole", "cut"))
    assert resumed["global_step"] == whole["global_step"] in (14, 16)
    differ = [k for k, v in whole["state_dict"].items() if not torch.equal(v, resumed["state_dict"][k])]
    assert not differ


def test_resume_auto_starts_then_continues_the_newest_checkpoint(tmp_path, monkeypatch, capsys):
    """One job script for the first launch and every SLURM requeue: `--resume auto` starts when the run has no
    checkpoint, else continues its newest, which may be the hpc_ckpt_N.ckpt Lightning saved as SLURM signalled."""
    import shutil

    from translate.train import rundir

    run_dir, common = tmp_path / "job", [*TINY, "checkpoint.monitor=null", "logger.image_every_n_steps=0"]
    assert main(["fit", *common, f"run_dir={run_dir}", "trainer.max_steps=4", "--resume", "auto"]) == 0
    assert "resuming" not in capsys.readouterr().out
    assert main(["fit", *common, f"run_dir={run_dir}", "trainer.max_steps=6", "--resume", "auto"]) == 0
    assert f"resuming {run_dir / 'checkpoints' / 'last.ckpt'} at step 4" in capsys.readouterr().out
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 6
    # a requeue checkpoint saved later than last.ckpt (here: another run's, at step 10) wins; an older one does not
    assert main(["fit", *common, f"run_dir={tmp_path}/other", "trainer.max_steps=10"]) == 0
    shutil.copy(tmp_path / "other" / "checkpoints" / "last.ckpt", run_dir / "hpc_ckpt_1.ckpt")
    assert rundir.resolve_resume("auto", run_dir) == (str(run_dir / "hpc_ckpt_1.ckpt"), 10)
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", run_dir / "hpc_ckpt_2.ckpt")
    assert rundir.resolve_resume("auto", run_dir)[0] == str(run_dir / "hpc_ckpt_1.ckpt")
    # a requeued SLURM job without --resume continues too (Lightning's auto-requeue), instead of refusing the
    # run_dir's checkpoints; outside SLURM it still refuses
    assert rundir.resolve_resume(None, run_dir) == (None, None)
    monkeypatch.setattr(rundir, "_on_slurm", lambda: True)
    assert rundir.resolve_resume(None, run_dir)[1] == 10
    assert rundir.resolve_resume(None, run_dir, overwrite=True) == (None, None)  # starting over was asked for
    # a run whose only checkpoint is a best or snapshot one (e.g. saved at a validation within the first epoch)
    only_best = tmp_path / "only_best" / "checkpoints"
    only_best.mkdir(parents=True)
    shutil.copy(run_dir / "hpc_ckpt_1.ckpt", only_best / "best-000-10.ckpt")
    assert rundir.resolve_resume("auto", only_best.parent) == (str(only_best / "best-000-10.ckpt"), 10)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *common, f"run_dir={run_dir}", "--resume", "last", "--overwrite"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    # requeue checkpoints count as an earlier run's: a fresh fit is refused, --overwrite replaces them too
    monkeypatch.setattr(rundir, "_on_slurm", lambda: False)
    requeued = tmp_path / "requeued"
    requeued.mkdir()
    shutil.copy(run_dir / "hpc_ckpt_1.ckpt", requeued / "hpc_ckpt_1.ckpt")
    assert main(["fit", *common, f"run_dir={requeued}", "trainer.max_steps=2"]) == 2
    assert "hpc_ckpt_1.ckpt): continue it with --resume auto" in capsys.readouterr().err
    assert main(["fit", *common, f"run_dir={requeued}", "trainer.max_steps=2", "--overwrite"]) == 0
    assert not list(requeued.glob("hpc_ckpt_*")) and not (requeued / ".replaced").exists()
    assert load_checkpoint(requeued / "checkpoints" / "last.ckpt")["global_step"] == 2


def test_a_resumed_run_trains_at_the_configs_learning_rate(run, tmp_path, capsys):
    """Continued with a lower model.lr (e.g. after it diverged) or a longer decay: the optimizers and the schedule
    take the config's, as the reference's --continue_train does; their moments and the schedule's position are
    kept."""
    copy = tmp_path / "slower"
    subprocess.run(["cp", "-r", str(run), str(copy)], check=True)
    before = load_checkpoint(copy / "checkpoints" / "last.ckpt")
    assert [g["initial_lr"] for s in before["optimizer_states"] for g in s["param_groups"]] == [2e-4, 2e-4]
    assert main(["fit", *TINY, f"run_dir={copy}", "trainer.max_epochs=3", "model.lr=5e-5", "--resume", "last"]) == 0
    out = capsys.readouterr().out
    assert "learning rates from the config, not the checkpoint (optimizer 0: 0.0002 -> 5e-05; optimizer 1: " in out
    assert "with options changed from that run: model.lr: 0.0002 -> 5e-05\n" in out  # run_dir and max_* not listed
    after = load_checkpoint(copy / "checkpoints" / "last.ckpt")
    assert adam_steps(after) == [12, 12]  # continued, not restarted
    assert [s["base_lrs"] for s in after["lr_schedulers"]] == [[5e-5], [5e-5]]
    assert [s["last_epoch"] for s in after["lr_schedulers"]] == [3, 3]
    assert [g["lr"] for s in after["optimizer_states"] for g in s["param_groups"]] == [5e-5, 5e-5]  # no decay yet
    # unchanged rates are left alone
    assert main(["fit", *TINY, f"run_dir={copy}", "trainer.max_epochs=4", "model.lr=5e-5", "--resume", "last"]) == 0
    assert "learning rates from the config" not in capsys.readouterr().out
    # the schedule's shape too: decaying over 4 epochs after 2, the fifth epoch trains at 5e-5 x (1 - 4/5)
    assert main(["fit", *TINY, f"run_dir={copy}", "trainer.max_epochs=5", "model.lr=5e-5", "model.n_epochs=2",
                 "model.n_epochs_decay=4", "--resume", "last"]) == 0
    assert "(optimizer 0: 5e-05 -> 1e-05; optimizer 1: 5e-05 -> 1e-05)" in capsys.readouterr().out
    after = load_checkpoint(copy / "checkpoints" / "last.ckpt")
    assert [s["lr_lambdas"][0]["n_epochs_decay"] for s in after["lr_schedulers"]] == [4, 4]


def test_snapshots_are_kept_every_n_minibatches(tmp_path, capsys):
    run_dir = tmp_path / "snapshots"
    assert main(["fit", *TINY, f"run_dir={run_dir}", "trainer.max_epochs=1", "checkpoint.monitor=null",
                 "checkpoint.every_n_train_steps=1", "checkpoint.keep_every_n_train_steps=2"]) == 0  # as pSp's
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert names == ["last.ckpt", "step-0000004.ckpt", "step-0000008.ckpt"]  # minibatches 2 and 4, 2 steps each
    assert load_checkpoint(run_dir / "checkpoints" / "step-0000004.ckpt")["global_step"] == 4
    assert main(["fit", *TINY, f"run_dir={tmp_path}/bad", "checkpoint.keep_every_n_train_steps=0"]) == 2
    assert "checkpoint.keep_every_n_train_steps: expected a number of minibatches >= 1" in capsys.readouterr().err


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["fit", *TINY, f"run_dir={tmp_path}/none", "--resume", "last"]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_validate_and_test(run, capsys):
    from translate.train.runner import evaluate

    ckpt = run / "checkpoints" / "last.ckpt"
    (res,) = evaluate("validate", ckpt)
    assert 5 < res["val/psnr"] < 60 and 0 < res["val/ssim"] <= 1
    assert main(["test", "--ckpt", str(ckpt)]) == 0


def test_test_saves_every_sample_s_images_for_evaluate(run, tmp_path, capsys):
    """`test --save-images DIR` writes input/ output/ target/ (the reference test script's results); evaluate on
    output vs target gives the PSNR that `test` logged."""
    from translate.tools import evaluate as ev
    from translate.train.runner import evaluate

    ckpt, out = run / "checkpoints" / "last.ckpt", tmp_path / "results"
    (res,) = evaluate("test", ckpt, save_images=out)
    for kind in ("input", "output", "target"):
        assert sorted(p.name for p in (out / kind).iterdir()) == [f"{i:04d}.png" for i in range(4)], kind
    assert np.array(Image.open(out / "output" / "0002.png")).shape == (32, 32, 3)
    scored = ev.evaluate_folders(out / "output", out / "target", ev.EvalConfig(), metrics=["psnr"])
    assert scored["metrics"]["psnr"] == pytest.approx(res["test/psnr"], abs=0.02)  # 8-bit rounding of the files
    # the input is what the net saw: translating it again gives the saved output
    from translate.train.runner import load_run
    import torch

    _, module = load_run(ckpt)
    x = torch.from_numpy(np.array(Image.open(out / "input" / "0002.png"))).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        y = module.inference_net()(x / 127.5 - 1)
    saved = np.array(Image.open(out / "output" / "0002.png")).astype(int)
    again = ((y[0] + 1) * 127.5).clamp(0, 255).round().permute(1, 2, 0).numpy().astype(int)
    assert np.abs(saved - again).mean() < 2  # the input file is 8-bit too

    # never into a folder holding an earlier run's images, nor into the data
    assert main(["validate", "--ckpt", str(ckpt), "--save-images", str(out)]) == 2
    assert "expected a new or empty folder (images of two runs would mix)" in capsys.readouterr().err
    data = tmp_path / "data"
    data.mkdir()
    assert main(["validate", "--ckpt", str(ckpt), "--save-images", str(data / "res"), f"data.root={data}"]) == 2
    assert f"refusing to write into the data folder {data}" in capsys.readouterr().err
    assert not (data / "res").exists()
    (tmp_path / "afile").write_text("x")
    assert main(["validate", "--ckpt", str(ckpt), "--save-images", str(tmp_path / "afile")]) == 2
    assert "afile: is a file; expected a new or empty folder" in capsys.readouterr().err


def test_export_then_predict_a_folder(run, tmp_path):
    bundle = tmp_path / "bundle"
    assert main(["export", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--out", str(bundle)]) == 0
    for name in ("model.onnx", "model.pt2", "weights.safetensors", "translator.json"):
        assert (bundle / name).is_file(), name
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("x.png", "y.png"):
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(src / name)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(bundle), "--input", str(src), "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x.png", "y.png"]
    assert Image.open(out / "x.png").size == (48, 32)
    assert main(["predict", "--model", str(bundle), "--input", str(src), "--output", str(src / "sub")]) == 2
    # everything translated already: nothing to do is a success, not "no image could be translated"
    assert main(["predict", "--model", str(bundle), "--input", str(src), "--output", str(out),
                 "--skip-existing"]) == 0


def test_print_config_and_bad_keys(tmp_path, capsys):
    assert main(["fit", "--config", "configs/pix2pix/demo.yaml", "model.ngf=12", "--print-config"]) == 0
    assert "ngf: 12" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  lamda_l1: 10\n")
    assert main(["fit", "--config", str(bad), *TINY, f"run_dir={tmp_path}/r"]) == 2
    err = capsys.readouterr().err
    assert "model.lamda_l1" in err and str(bad) in err
    assert not (tmp_path / "r").exists()  # failed before training started


def test_missing_data_root_names_the_path(tmp_path, capsys):
    args = ["fit", "data.kind=aligned", f"data.root={tmp_path}/nowhere", f"run_dir={tmp_path}/r",
            "logger.wandb.mode=disabled", "trainer.accelerator=cpu"]
    assert main(args) == 2
    assert "nowhere" in capsys.readouterr().err


def test_ddp_two_cpu_processes_resume_mid_epoch(tmp_path, fit_ddp):
    def position(ckpt):  # the training loader's epoch and minibatches done (Lightning's distributed sampler)
        return ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]

    # 8 samples over 2 processes x batch 2 = 2 minibatches per process per epoch, 2 optimizer steps each
    first = fit_ddp(tmp_path / "ddp", *TINY, "trainer.max_steps=2")
    assert first["global_step"] == 2 and position(first) == [{"epoch": 0, "batches": 1, "images": 4,
                                                                  "epoch_batches": 2}]
    last = fit_ddp(tmp_path / "ddp", *TINY, "trainer.max_steps=8", "--resume", "last")
    assert last["global_step"] == 8 and position(last) == [{"epoch": 1, "batches": 2, "images": 8,
                                                                "epoch_batches": 2}]


def test_resume_after_sigkill(tmp_path, cli_process):
    run_dir = tmp_path / "killed"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    p = cli_process("fit", *TINY, f"run_dir={run_dir}", "trainer.max_epochs=1000", "checkpoint.monitor=null",
             "checkpoint.every_n_train_steps=4", "trainer.check_val_every_n_epoch=1000")
    deadline = time.time() + 240
    while time.time() < deadline and not (ckpt.is_file() and load_checkpoint(ckpt)["global_step"] >= 12):
        assert p.poll() is None, p.stdout.read()[-3000:]
        time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    state = load_checkpoint(ckpt)  # never half-written
    step = state["global_step"]
    assert step >= 12 and step % 4 == 0
    assert main(["fit", *TINY, f"run_dir={run_dir}", f"trainer.max_steps={step + 4}", "checkpoint.monitor=null",
                 "checkpoint.every_n_train_steps=4", "--resume", "last"]) == 0
    after = load_checkpoint(ckpt)
    assert after["global_step"] == step + 4
    assert adam_steps(after) == [(step + 4) // 2] * 2


@pytest.mark.parametrize("sig, status, by", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")],
                         ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_signal_saves_a_checkpoint_to_resume_from(tmp_path, cli_process, sig, status, by):
    """A preempted machine or a scheduler's time limit sends SIGTERM, a user presses Ctrl-C: the run stops after its
    minibatch with last.ckpt saved there (no periodic or epoch checkpoint is due in this run) and exit status 143 or
    130. Ctrl-C used to end with Lightning's 'Detected KeyboardInterrupt', status 1 and nothing saved."""
    run_dir = tmp_path / "stopped"
    p = cli_process("fit", *TINY, f"run_dir={run_dir}", "trainer.max_epochs=1000", "checkpoint.monitor=null",
                    "checkpoint.every_n_train_steps=100000", "trainer.check_val_every_n_epoch=1000")
    deadline = time.time() + 240
    while time.time() < deadline and len(list((run_dir / "images").glob("train_images_*.png"))) < 3:
        assert p.poll() is None, p.stdout.read()[-3000:]
        time.sleep(0.2)
    p.send_signal(sig)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == status, out[-3000:]
    assert f"stopped by {by} after a minibatch; checkpoint saved: continue with --resume last" in out
    assert "KeyboardInterrupt" not in out
    step = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"]
    assert step >= 6 and step % 2 == 0  # whole minibatches (a G and a D step each)
    assert main(["fit", *TINY, f"run_dir={run_dir}", f"trainer.max_steps={step + 4}", "checkpoint.monitor=null",
                 "--resume", "last"]) == 0
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == step + 4


def test_a_diverged_run_stops_without_overwriting_its_checkpoints(tmp_path, monkeypatch, capsys):
    import torch

    from translate.methods.pix2pix import Pix2Pix

    step = Pix2Pix.training_step

    def diverging_step(self, batch, batch_idx):
        out = step(self, batch, batch_idx)
        if self.global_step == 6:  # minibatch 3; the checkpoint of minibatch 2 (step 4) was good
            with torch.no_grad():
                next(self.net_g.parameters()).fill_(float("nan"))
        return out

    monkeypatch.setattr(Pix2Pix, "training_step", diverging_step)
    run_dir = tmp_path / "diverged"
    assert main(["fit", *TINY, f"run_dir={run_dir}", "trainer.max_epochs=3", "checkpoint.monitor=null",
                 "checkpoint.every_n_train_steps=2"]) == 2
    err = capsys.readouterr().err
    assert "training diverged at step 8: net_g." in err and "holds NaN or inf, so no checkpoint was written" in err
    assert f"{run_dir / 'checkpoints' / 'last.ckpt'} keeps step 4" in err and "--resume last" in err
    last = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 4 and all(torch.isfinite(v).all() for v in last["state_dict"].values())


def test_every_ddp_process_draws_its_own_random_numbers():
    """seed * world_size + rank under DDP (NVIDIA's rule), so processes do not repeat rank 0's latents and noise;
    one process keeps the plain seed."""
    from types import SimpleNamespace

    import torch

    from translate.train.callbacks import RankSeed

    def draw(world_size, rank, resume_step=None):
        torch.manual_seed(123)
        RankSeed(7, resume_step).setup(SimpleNamespace(world_size=world_size, global_rank=rank), None, "fit")
        return torch.randn(4), np.random.rand()

    (t0, n0), (t1, n1) = draw(2, 0), draw(2, 1)
    assert not torch.equal(t0, t1) and n0 != n1
    torch.manual_seed(7 * 2 + 1)
    assert torch.equal(t1, torch.randn(4))
    one_process = draw(1, 0)[0]
    torch.manual_seed(123)
    assert torch.equal(one_process, torch.randn(4))  # untouched
    # a DDP run resumed at step 40 does not replay the draws of its start, and its processes still differ
    r0, r1 = draw(2, 0, resume_step=40)[0], draw(2, 1, resume_step=40)[0]
    assert not torch.equal(r0, t0) and not torch.equal(r1, t1) and not torch.equal(r0, r1)
    assert torch.equal(draw(2, 1, resume_step=40)[0], r1)  # and is seeded, not random
    # one process resuming a checkpoint without saved generators (written under DDP) does not replay either
    assert not torch.equal(draw(1, 0, resume_step=40)[0], one_process)


def test_a_fresh_fit_never_mixes_into_an_earlier_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    old = run_dir / "checkpoints" / "best-009-80.ckpt"
    old.write_bytes(b"an earlier run's weights")
    assert main(["fit", *TINY, f"run_dir={run_dir}", "trainer.max_epochs=1"]) == 2
    err = capsys.readouterr().err
    # no last.ckpt to `--resume last` from: auto takes the newest checkpoint there is
    assert "best-009-80.ckpt" in err and "continue it with --resume auto" in err and "--overwrite" in err
    assert old.read_bytes() == b"an earlier run's weights"
    (run_dir / "config.yaml").write_text("the earlier run's config\n")
    # --overwrite with a mistake that stops the new run before it trains: the earlier run is put back
    assert main(["fit", *TINY, f"run_dir={run_dir}", "trainer.max_epochs=1", "--overwrite", "data.kind=paired",
                 f"data.root={tmp_path / 'no_such_data'}"]) == 2
    assert old.read_bytes() == b"an earlier run's weights"
    assert (run_dir / "config.yaml").read_text() == "the earlier run's config\n"
    assert not (run_dir / ".replaced").exists()
    assert main(["fit", *TINY, f"run_dir={run_dir}", "trainer.max_epochs=1", "--overwrite"]) == 0
    assert not old.exists() and load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 0
    assert not (run_dir / ".replaced").exists() and "num_downs: 5" in (run_dir / "config.yaml").read_text()
    # a run killed after moving the earlier checkpoints aside, before training: the next fit puts them back
    from translate.train.rundir import check_run_dir

    check_run_dir(run_dir, None, overwrite=True)
    assert not (run_dir / "checkpoints").exists() and (run_dir / ".replaced" / "checkpoints" / "last.ckpt").is_file()
    with pytest.warns(UserWarning, match="put back the checkpoints of an earlier run"):
        assert main(["fit", *TINY, f"run_dir={run_dir}", "trainer.max_epochs=2", "--resume", "last"]) == 0
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 1  # resumed from the put-back one


@pytest.mark.parametrize("workers", [0, 1])
def test_images_of_different_sizes_in_one_batch_name_the_files(tmp_path, capsys, workers):
    """preprocess none keeps sizes: a batch that cannot be stacked names two files, also from a loader worker."""
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        for i, w in enumerate((32, 32, 64, 64)):  # sides the U-Net takes: kept as they are
            Image.fromarray(np.zeros((32, 2 * w, 3), np.uint8)).save(tmp_path / split / f"{i}.png")
    args = ["fit", *TINY, "data.kind=aligned", f"data.root={tmp_path}", f"run_dir={tmp_path}/r",
            "data.batch_size=4", f"data.num_workers={workers}", "trainer.max_epochs=1", "data.serial_batches=true"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: images of different sizes in one batch") and "Traceback" not in err
    assert "64x32" in err and "32x32" in err and "data.batch_size=1" in err


def test_a_misspelt_monitor_or_changed_architecture_is_a_clean_error(tmp_path, capsys, run):
    assert main(["fit", *TINY, f"run_dir={tmp_path}/m", "trainer.max_epochs=1", "checkpoint.monitor=val/PSNR"]) == 2
    assert "val/PSNR" in capsys.readouterr().err
    ckpt = run / "checkpoints" / "last.ckpt"
    assert main(["validate", "--ckpt", str(ckpt), "model.ngf=8"]) == 2
    assert "do not fit the configured nets" in capsys.readouterr().err


def test_more_bad_input_gets_clean_errors(tmp_path, capsys, run):
    import torch

    foreign = tmp_path / "plain.ckpt"
    torch.save({"hello": torch.zeros(1)}, foreign)
    assert main(["fit", *TINY, f"run_dir={tmp_path}/r", "--resume", str(foreign)]) == 2
    assert "not a training checkpoint written by this framework" in capsys.readouterr().err
    torch.save(torch.zeros(3), foreign)
    assert main(["export", "--ckpt", str(foreign), "--out", str(tmp_path / "b")]) == 2
    assert "not a checkpoint written by this framework" in capsys.readouterr().err
    assert main(["fit", *TINY, "data.batch_size=[1,2"]) == 2
    assert "cannot parse overrides" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path), "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                 "--latent-mask", "abc"]) == 2
    assert "--latent-mask: expected integers" in capsys.readouterr().err
    bundle = tmp_path / "bundle"
    assert main(["export", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--out", str(bundle)]) == 0
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "zero.png").write_bytes(b"")
    capsys.readouterr()
    assert main(["predict", "--model", str(bundle), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "warning: skipping" in err and "zero.png" in err and "no image could be translated" in err


def test_overrides_may_follow_options(capsys):
    assert main(["fit", "model.ngf=12", "--config", "configs/pix2pix/demo.yaml", "model.ndf=6", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "ngf: 12" in out and "ndf: 6" in out
    with pytest.raises(SystemExit):
        main(["fit", "--config", "configs/pix2pix/demo.yaml", "--no-such-flag"])


def test_image_sizes_are_fitted_to_the_generator(tmp_path):
    """A U-Net of 5 levels takes sides divisible by 32: preprocess none raises data.size_multiple to it, and says so
    once when an image is resized (never when the images fit); a crop_size that does not fit is an error before
    training."""
    from translate.train import runner
    from translate.train.config import ConfigError, load_config

    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        for i in range(2):
            Image.fromarray(np.full((36, 2 * 40, 3), 60 * i, np.uint8)).save(tmp_path / split / f"{i}.png")
    base = [*TINY, "data.kind=aligned", f"data.root={tmp_path}", f"run_dir={tmp_path}/r", "trainer.max_epochs=1",
            "data.batch_size=1", "checkpoint.monitor=null"]
    with pytest.warns(UserWarning, match="images of 40x36 are resized to 32x32: sides must be multiples of 32"):
        runner.fit(load_config([], base))
    assert "size_multiple: 32" in (tmp_path / "r" / "config.yaml").read_text()
    bad = load_config([], [*base, "data.preprocess=resize_and_crop", "data.load_size=48", "data.crop_size=40"])
    with pytest.raises(ConfigError, match="data.crop_size is 40.*divisible by 32"):
        runner.fit(bad, overwrite=True)


def test_resume_of_another_method_and_wrong_kinds_of_paths_are_one_line_errors(run, tmp_path, capsys):
    from translate.train.rundir import resolve_resume

    last = run / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match=r"is a 'pix2pix' run, but the config trains 'cyclegan'"):
        resolve_resume(str(last), tmp_path, "cyclegan")
    assert resolve_resume(str(last), tmp_path, "pix2pix")[0] == str(last)
    (tmp_path / "afile").write_text("x")
    assert main(["fit", *TINY, f"run_dir={tmp_path}/r", "data.kind=paired", f"data.root={tmp_path / 'afile'}"]) == 2
    assert "data.root: expected a folder, got a file" in capsys.readouterr().err
    assert main(["fit", *TINY, f"run_dir={tmp_path}/r", "model.netG=unet_999"]) == 2
    assert "error: model.netG: expected one of" in capsys.readouterr().err
    # export into a folder of the user's that is not a bundle: the advice is another folder, not --overwrite
    user = tmp_path / "photos"
    user.mkdir()
    (user / "me.png").write_bytes(b"x")
    assert main(["export", "--ckpt", str(last), "--out", str(user)]) == 2
    assert "(choose another folder)" in capsys.readouterr().err and (user / "me.png").read_bytes() == b"x"


def _run_files(run_dir):
    """What a run has written to its folder, with contents (checkpoints aside; W&B runs by folder: the W&B service
    appends to its own logs after a run has finished)."""
    files = {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
             if p.is_file() and not {"checkpoints", "wandb"} & set(p.parts)}
    return files, sorted(p.name for p in (run_dir / "wandb").glob("*run-*"))


def test_training_past_the_lr_schedule_holds_at_zero_and_says_so(tmp_path, capsys):
    """trainer.max_epochs beyond model.n_epochs + model.n_epochs_decay used to train at negative rates."""
    run_dir = tmp_path / "past"
    said = ("trainer.max_epochs=4 runs past the LR schedule's 2 epochs (model.n_epochs=1 + model.n_epochs_decay=1): "
            "epochs 3-4 train at learning rate 0; set one to match the other")
    with pytest.warns(UserWarning) as caught:  # printed as one line by translate.console (tests/translate/test_console)
        assert main(["fit", *TINY, f"run_dir={run_dir}", "model.n_epochs=1", "model.n_epochs_decay=1",
                     "trainer.max_epochs=4", "checkpoint.monitor=null"]) == 0
    assert said in [str(w.message) for w in caught]
    with open(run_dir / "csv" / "metrics.csv") as f:
        lrs = [float(r["train/lr"]) for r in csv.DictReader(f) if r.get("train/lr")]
    assert len(lrs) == 4 and min(lrs) >= 0.0 and lrs[-2:] == [0.0, 0.0]


def test_a_rejected_resume_writes_nothing_and_names_the_key(tmp_path, capsys):
    """Resuming a 3-epoch run with trainer.max_epochs=1 failed with Lightning's raw message after the run's
    config.yaml, hparams.yaml, metrics and W&B runs had been written: now it is refused first, in one line."""
    import wandb

    run_dir = tmp_path / "done"
    common = [*TINY, f"run_dir={run_dir}", "checkpoint.monitor=null", "logger.wandb.mode=offline"]
    try:
        assert main(["fit", *common, "trainer.max_epochs=3"]) == 0
    finally:
        wandb.finish()  # the W&B run of this process: later tests start their own
    before = _run_files(run_dir)
    capsys.readouterr()
    assert main(["fit", *common, "trainer.max_epochs=1", "--resume", "last"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        f"error: --resume: {run_dir}/checkpoints/last.ckpt has trained 3 epochs, more than trainer.max_epochs=1; "
        f"raise trainer.max_epochs (e.g. trainer.max_epochs=4) to go on")
    assert _run_files(run_dir) == before

    try:
        assert main(["fit", *common, "trainer.max_epochs=4", "--resume", "last"]) == 0
    finally:
        wandb.finish()
    assert ("the run had finished (trainer.max_epochs=3 reached); epoch 2 of the data had ended (all its 4 "
            "minibatches), training goes on with epoch 3") in capsys.readouterr().out


def test_data_errors_come_before_the_run_writes_anything(tmp_path, capsys):
    (tmp_path / "data" / "A").mkdir(parents=True)
    (tmp_path / "data" / "B").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "data" / "A" / "x.png")
    run_dir = tmp_path / "run"
    assert main(["fit", *TINY, "data.kind=paired", f"data.root={tmp_path / 'data'}", f"run_dir={run_dir}",
                 "logger.wandb.mode=offline"]) == 2
    assert "no images (.png, .jpg" in capsys.readouterr().err  # B/ is empty
    assert not run_dir.exists()


def test_fit_says_which_images_validate_and_refuses_to_pick_the_best_on_training_images(tmp_path, capsys):
    for side in "AB":
        for i in range(10):
            (tmp_path / "data" / side).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((32, 32, 3), 20 * i, np.uint8)).save(tmp_path / "data" / side / f"{i}.png")
    paired = [*TINY, "data.kind=paired", f"data.root={tmp_path / 'data'}", "trainer.max_epochs=1"]
    assert main(["fit", *paired, f"run_dir={tmp_path}/held"]) == 0
    assert f"validation: 1 samples held out from {tmp_path / 'data'} (data.val_fraction 0.1) (9 train)" in (
        capsys.readouterr().out)
    assert main(["fit", *paired, "data.val_fraction=0", f"run_dir={tmp_path}/same"]) == 2
    assert "checkpoint.monitor 'val/psnr' would pick the best checkpoint on the training images" in (
        capsys.readouterr().err)
    assert not (tmp_path / "same").exists()
    assert main(["fit", *paired, "data.val_fraction=0", "checkpoint.monitor=null", f"run_dir={tmp_path}/same"]) == 0
    assert "the training images (data.val_fraction 0)" in capsys.readouterr().out


def test_help_explains_every_option_and_fitting_overrides(capsys):
    from translate.cli import build_parser

    parser = build_parser()
    for command in ("fit", "validate", "test", "export", "predict"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = capsys.readouterr().out
        assert ("trainer.max_epochs" in text) == (command == "fit"), command
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"
    import translate.cli

    assert all(f" {name} " in translate.cli.__doc__.replace("\n", " ").replace(",", " ") for name in sub.choices)


def test_a_config_error_names_its_key_in_one_line(tmp_path, capsys):
    """A value a net builder rejects is a ConfigError carrying its key, raised where the value is checked and named
    as the run config calls it; the CLI prints it in one line."""
    from translate.train.config import ConfigError, load_config
    from translate.train.runner import build_module

    with pytest.raises(ConfigError, match="model.netG: expected one of") as e:
        build_module(load_config([], [*TINY, "model.netG=unet_9000"]))
    assert e.value.key == "model.netG"
    assert main(["fit", *TINY, f"run_dir={tmp_path}/r", "model.norm=group"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model.norm: expected one of") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    """A ValueError that is no user error (here a planted bug) is not turned into a one-line message."""
    from translate.train import runner

    def buggy(cfg, module):
        raise ValueError("planted bug")

    monkeypatch.setattr(runner, "fit_sizes", buggy)
    with pytest.raises(ValueError, match="planted bug"):
        main(["fit", *TINY, f"run_dir={tmp_path}/r"])
    assert "error:" not in capsys.readouterr().err
