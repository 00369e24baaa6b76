"""The web app (translate/tools/app.py): the same bytes as `predict`, refused uploads as one line, the controls of
pSp and CycleGAN bundles; and in a real browser (headless Chromium driven by Playwright): upload, translate,
download, a bad upload while the page keeps working, a screenshot of the page."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from nets import build_generator, generator_spec, inference_copy
from translate.cli import main
from translate.deploy.export import export_bundle
from translate.deploy.predict import predict_paths
from translate.tools import app

ROOT = Path(__file__).resolve().parents[3]
BROWSER_TIMEOUT_S = 60  # any one wait of the browser tests (page load, a translation, a download)
SERVER_START_S = 180  # importing Gradio and torch on a busy 2-core machine takes a while


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The nets here are tiny: a second thread only adds synchronisation on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_bundle(folder, method="pix2pix", direction="AtoB", input_nc=3, output_nc=3, seed=0, **meta):
    """An eager-only bundle (translator.json + weights.safetensors) of a tiny resnet generator with random weights:
    what `export` writes minus the ONNX and torch.export graphs, which the eager backend does not read."""
    torch.manual_seed(seed)
    net = build_generator("resnet", input_nc, output_nc, ngf=4, n_blocks=1, norm="instance")
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in inference_copy(net).state_dict().items()},
              folder / "weights.safetensors")
    (folder / "translator.json").write_text(json.dumps(
        {"format": 2, "method": method, "input_nc": input_nc, "output_nc": output_nc, "value_range": [-1.0, 1.0],
         "size_multiple": 4, "direction": direction, "generator": generator_spec(net), **meta}))
    return folder


def picture(path, size=(96, 64)):
    """A small RGB picture with shapes (a gradient, a disc, a bar), so that the screenshot shows something."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), np.full_like(xx, 160)], -1).astype(np.uint8)
    rgb[(xx - w // 3) ** 2 + (yy - h // 2) ** 2 < (h // 4) ** 2] = (250, 220, 40)
    rgb[h // 5: h // 5 + 6, w // 2: w - 8] = (20, 20, 20)
    Image.fromarray(rgb).save(path)
    return Path(path)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A CycleGAN pair as `export --direction both` writes it (OUT/AtoB, OUT/BtoA) and a pix2pix bundle."""
    root = tmp_path_factory.mktemp("bundles")
    return {"AtoB": write_bundle(root / "horse2zebra" / "AtoB", "cyclegan", "AtoB", seed=1),
            "BtoA": write_bundle(root / "horse2zebra" / "BtoA", "cyclegan", "BtoA", seed=2),
            "pix2pix": write_bundle(root / "facades", "pix2pix", "BtoA", seed=3)}


@pytest.fixture(scope="module")
def models(bundles):
    models = app.load_models([bundles["AtoB"], bundles["BtoA"], bundles["pix2pix"]])
    assert list(models) == ["horse2zebra/AtoB", "horse2zebra/BtoA", "facades"]
    return models


def test_the_app_writes_the_bytes_predict_writes(models, bundles, tmp_path):
    (tmp_path / "in").mkdir()
    src = picture(tmp_path / "in" / "photo.png")
    r = app.translate_upload(models["facades"], src, tmp_path / "request")
    (expected,) = predict_paths(models["facades"].translator, src, tmp_path / "predicted", progress=False)
    assert r.output_file == tmp_path / "request" / "photo.png"
    assert r.output_file.read_bytes() == expected.read_bytes()
    assert r.shown_input.shape == (64, 96, 3) and r.output.shape == (64, 96, 3)
    assert r.gallery == []  # a pix2pix bundle has no variants and no other direction


def test_the_app_runs_the_backend_predict_picks_and_writes_its_bytes(tmp_path, capsys):
    """A bundle with its ONNX graph: `translate predict` runs onnxruntime on the CPU, so the page does too, and the
    download equals the file the predict command writes; an explicit --backend is kept."""
    torch.manual_seed(4)
    net = build_generator("resnet", 3, 3, ngf=4, n_blocks=1, norm="instance")
    inf = inference_copy(net)
    meta = {"method": "pix2pix", "input_nc": 3, "output_nc": 3, "value_range": [-1.0, 1.0],
            "size_multiple": net.size_multiple, "direction": "AtoB", "generator": generator_spec(net)}
    bundle = export_bundle(inf, tmp_path / "onnx_bundle", meta, torch.rand(1, 3, 32, 32) * 2 - 1,
                           size_multiple=net.size_multiple)
    (tmp_path / "in").mkdir()
    src = picture(tmp_path / "in" / "photo.png")
    (model,) = app.load_models([bundle]).values()
    assert model.translator.backend == "onnx"
    assert app.load_models([bundle], backend="eager")["onnx_bundle"].translator.backend == "eager"
    r = app.translate_upload(model, src, tmp_path / "request")
    assert main(["predict", "--model", str(bundle), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "predicted")]) == 0
    assert "(onnx backend)" in capsys.readouterr().out
    assert r.output_file.read_bytes() == (tmp_path / "predicted" / "photo.png").read_bytes()


def test_cyclegan_directions_are_paired_and_the_round_trip_goes_back(models, tmp_path):
    a2b, b2a, p2p = models["horse2zebra/AtoB"], models["horse2zebra/BtoA"], models["facades"]
    assert (a2b.partner, b2a.partner, p2p.partner) == (b2a, a2b, None)
    assert "round trip: back through" in a2b.facts() and "direction: AtoB" in a2b.facts()
    r = app.translate_upload(a2b, picture(tmp_path / "horse.png"), tmp_path / "out")
    ((back, caption),) = r.gallery
    assert caption == "round trip: back through horse2zebra/BtoA"
    np.testing.assert_array_equal(back, b2a.translator(r.output))


def test_bundles_are_listed_by_name_and_repeated_names_by_parent_too(bundles, tmp_path):
    other = write_bundle(tmp_path / "elsewhere" / "AtoB", "cyclegan", "AtoB")
    assert list(app.load_models([bundles["AtoB"], bundles["pix2pix"]])) == ["horse2zebra/AtoB", "facades"]
    twins = [write_bundle(tmp_path / d / "net", seed=i) for i, d in enumerate(("day", "night"))]
    assert list(app.load_models(twins)) == ["day/net", "night/net"]
    assert app.load_models([other])["elsewhere/AtoB"].partner is None  # alone: no other direction to go back through
    with pytest.raises(ValueError, match="a bundle is given twice"):
        app.load_models([other, other])
    with pytest.raises(FileNotFoundError, match="bundle not found"):
        app.load_models([tmp_path / "missing"])


def test_bad_uploads_are_refused_with_one_line_naming_the_file(models, tmp_path):
    m = models["facades"]
    fake = tmp_path / "notes.png"
    fake.write_text("this is a text file, renamed")
    with pytest.raises(app.Rejected, match=r"^notes.png: unreadable image \(cannot identify image file") as e:
        app.translate_upload(m, fake, tmp_path / "out")
    assert str(tmp_path) not in str(e.value)  # where the server keeps uploads is nothing the page shows
    (tmp_path / "notes.txt").write_text("text")
    with pytest.raises(app.Rejected, match=r"^notes.txt: not an image file \(expected .png"):
        app.translate_upload(m, tmp_path / "notes.txt", tmp_path / "out")
    big = picture(tmp_path / "big.png", size=(120, 100))
    with pytest.raises(app.Rejected, match=r"^big.png: 120x100 is 12,000 pixels, over the limit of 11,999"):
        app.translate_upload(m, big, tmp_path / "out", max_pixels=11_999)
    assert app.translate_upload(m, big, tmp_path / "out", max_pixels=12_000).output.shape == (100, 120, 3)
    assert not (tmp_path / "out" / "notes.png").exists()


def test_label_map_bundles_take_class_indices_and_refuse_rgb(tmp_path):
    folder = write_bundle(tmp_path / "seg2face", "pix2pix", "AtoB", input_nc=5, label_nc=5)
    (m,) = app.load_models([folder]).values()
    assert m.input_kind == "label map" and "label maps of 5 classes" in m.facts()
    labels = np.zeros((32, 40), np.uint8)
    labels[8:24, 10:30] = 4
    Image.fromarray(labels, mode="L").save(tmp_path / "map.png")
    r = app.translate_upload(m, tmp_path / "map.png", tmp_path / "out")
    assert r.output.shape == (32, 40, 3)
    np.testing.assert_array_equal(r.shown_input[16, 20], (0, 0, 128))  # class 4 in the VOC colours (navy)
    with pytest.raises(app.Rejected, match=r"^photo.png: expected a label map of class indices .* got a 'RGB' image"):
        app.translate_upload(m, picture(tmp_path / "photo.png"), tmp_path / "out")


def test_sketch_bundles_take_the_canvas_composited_on_white(tmp_path):
    (m,) = app.load_models([write_bundle(tmp_path / "sketch2photo", input_nc=1)]).values()
    assert m.input_kind == "sketch" and "gray images or sketches" in m.facts()
    rgba = np.zeros((48, 48, 4), np.uint8)  # transparent, but for one black stroke
    rgba[20:24, 5:40] = (0, 0, 0, 255)
    path = app.save_sketch(rgba, tmp_path / "canvas")
    drawn = np.asarray(Image.open(path))
    assert drawn[0, 0].tolist() == [255, 255, 255] and drawn[22, 10].tolist() == [0, 0, 0]
    assert app.translate_upload(m, path, tmp_path / "out").output.shape == (48, 48, 3)


@pytest.fixture(scope="module")
def psp_bundle(prior, tmp_path_factory):
    """A tiny pSp bundle (32-px prior with 8 W codes), eager only, as `export` writes its translator.json."""
    from nets.encoders import build_encoder
    from nets.psp import PSPNet
    from priors.loaders import load_prior

    torch.manual_seed(0)
    G = load_prior(prior)
    enc = build_encoder("GradualStyleEncoder", input_nc=3, output_size=32, input_size=32, channels=[4, 8, 8, 16],
                        w_dim=16)
    net = PSPNet(enc, G, G.mapping.w_avg, noise_mode="const").eval()
    folder = tmp_path_factory.mktemp("psp") / "toyfaces"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, folder / "weights.safetensors")
    (folder / "translator.json").write_text(json.dumps(
        {"format": 2, "method": "psp", "input_nc": 3, "output_nc": 3, "value_range": [-1.0, 1.0],
         "size_multiple": 32, "input_size": 32, "direction": "AtoB", "generator": None, "psp": net.spec(),
         "latent_mask": [6, 7], "mix_alpha": None}))
    return folder


def test_psp_variants_take_the_latent_mask_and_strength_of_the_page(psp_bundle, tmp_path):
    (m,) = app.load_models([psp_bundle]).values()
    assert m.is_psp and m.n_styles() == 8 and "latent mask [6, 7]" in m.facts()
    assert app.latent_mask(m, app.BUNDLE_MASK) is None
    assert app.latent_mask(m, "coarse") == [0, 1] and app.latent_mask(m, "fine") == [4, 5, 6, 7]
    assert app.latent_mask(m, app.LAYERS_MASK, "2-3,7") == [2, 3, 7]
    with pytest.raises(app.Rejected, match=r"layers: this net has layers 0..7, got 5-9"):
        app.latent_mask(m, app.LAYERS_MASK, "5-9")
    with pytest.raises(app.Rejected, match="give the layers to mix"):
        app.latent_mask(m, app.LAYERS_MASK, "")
    src = picture(tmp_path / "face.png", size=(32, 32))
    r = app.translate_upload(m, src, tmp_path / "out", variants=2, mask=[4, 5, 6, 7], mix_alpha=0.5, seed=3)
    assert [c for _, c in r.gallery] == ["variant 0 (seed 3)", "variant 1 (seed 4)"]
    predict_paths(m.translator, src, tmp_path / "predicted", progress=False, variants=2, latent_mask=[4, 5, 6, 7],
                  mix_alpha=0.5, seed=3)
    for k, (variant, _) in enumerate(r.gallery):  # predict's <stem>_mix<k> files, from the same path
        np.testing.assert_array_equal(variant, np.asarray(Image.open(tmp_path / "predicted" / f"face_mix{k}.png")))
    assert not np.array_equal(r.gallery[0][0], r.output)
    assert m.mixes and not next(iter(app.load_models([write_bundle(tmp_path / "p2p")]).values())).mixes


def test_hosts_other_than_loopback_are_flagged():
    assert app.is_loopback("127.0.0.1") and app.is_loopback("localhost") and app.is_loopback("::1")
    assert not app.is_loopback("0.0.0.0") and not app.is_loopback("192.168.1.4")


def test_the_app_command_binds_to_loopback_unless_told_and_warns_for_other_addresses(bundles, monkeypatch, capsys):
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        pytest.skip("the app command needs gradio (pip install -e \".[app]\")")
    served = []
    monkeypatch.setattr(app, "serve", lambda *a, **kw: served.append((a, kw)))
    assert main(["app", "--model", str(bundles["pix2pix"])]) == 0
    assert served[-1] == (([str(bundles["pix2pix"])],), dict(host="127.0.0.1", port=7860, max_pixels=4096 * 4096,
                                                              backend="auto", device="cpu"))
    assert main(["app", "--model", str(bundles["pix2pix"]), "--max-pixels", "0"]) == 2
    assert "--max-pixels: expected a pixel count >= 1, got 0" in capsys.readouterr().err
    monkeypatch.undo()

    launched = []  # serve's pages, built and launched here without Gradio
    monkeypatch.setattr(app, "build_page", lambda models, work, max_pixels: ("page", list(models), max_pixels))
    monkeypatch.setattr(app, "launch", lambda page, host, port: launched.append((page, host, port)))
    app.serve([bundles["pix2pix"]], host="0.0.0.0", port=8000, max_pixels=100)
    assert launched[-1] == (("page", ["facades"], 100), "0.0.0.0", 8000)
    assert "warning: serving on 0.0.0.0: anyone who can reach this machine on port 8000" in capsys.readouterr().err
    app.serve([bundles["pix2pix"]])
    assert launched[-1][1:] == ("127.0.0.1", 7860) and "warning" not in capsys.readouterr().err


def test_the_app_command_says_how_to_install_gradio_when_it_is_missing(bundles, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["app", "--model", str(bundles["pix2pix"])]) == 2
    assert capsys.readouterr().err.strip() == f"error: {app.INSTALL_HINT}"


# ---- in a real browser ------------------------------------------------------------------------------------------
def chromium_or_skip() -> str:
    """The system Chromium for Playwright; missing pieces skip the browser tests here and fail them in CI."""
    import importlib.util

    missing = [f"{name} (pip install -e \".[app,test]\")" for name in ("gradio", "playwright")
               if importlib.util.find_spec(name) is None]
    exe = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        missing.append("a Chromium browser (Debian: apt-get install chromium; or set CHROMIUM=/path/to/it)")
    if missing:
        reason = f"the browser tests need {' and '.join(missing)}"
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(bundles, psp_bundle, tmp_path_factory):
    """`translate app` on 127.0.0.1 in a child process, serving the CycleGAN pair, the pix2pix bundle, a sketch
    bundle and a pSp bundle; stopped (Ctrl-C, then killed if it lingers) when the module's tests are done."""
    chromium_or_skip()
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    root = bundles["pix2pix"].parent
    shutil.copytree(psp_bundle, root / "toyfaces")
    write_bundle(root / "sketch2face", input_nc=1, seed=4)
    given = [a for k in ("horse2zebra/AtoB", "horse2zebra/BtoA", "facades", "sketch2face", "toyfaces")
             for a in ("--model", k)]
    with open(log, "w") as out:  # run from the bundles' folder: the page shows the paths as given
        proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "app", *given, "--port", str(port)],
                                cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT)))
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"translate app exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"translate app did not answer on {url} within {SERVER_START_S} s: "
                            f"{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
    assert "on http://127.0.0.1:" in log.read_text()


@pytest.fixture
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_or_skip(), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            tab = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 900})
            tab.set_default_timeout(BROWSER_TIMEOUT_S * 1000)
            tab.elsewhere = []  # requests the page makes to any other host than the app's
            tab.on("request", lambda r: r.url.startswith((server, "data:", "blob:")) or tab.elsewhere.append(r.url))
            tab.goto(server)
            tab.wait_for_selector("#translate")
            yield tab
        finally:
            browser.close()


def translate_in_page(page, path):
    """Upload `path`, press Translate and wait for the status line that names the file (the page's answer, not its
    progress note); return that line."""
    clear = page.query_selector("#upload button[aria-label=Clear]")  # the file of an earlier upload
    if clear is not None:
        clear.click()
        page.wait_for_selector("#upload button[aria-label=Clear]", state="detached")  # the drop zone is back
    page.set_input_files("#upload input[type=file]", str(path))
    page.wait_for_selector(f"#upload [aria-label='{path.name}']")  # the upload has reached the server
    page.click("#translate")
    page.wait_for_function("([el, name]) => /^(Translated|Refused|Error)/.test(el.innerText.trim()) && "
                           "el.innerText.includes(name)", arg=[page.query_selector("#status"), path.name])
    return page.inner_text("#status").strip()


@pytest.mark.timeout(SERVER_START_S + 4 * BROWSER_TIMEOUT_S)
def test_browser_upload_translate_and_download_equal_predict(page, bundles, tmp_path):
    src = picture(tmp_path / "horse.png", size=(256, 192))
    status = translate_in_page(page, src)
    assert status.startswith("Translated horse.png with horse2zebra/AtoB: 256 x 192 output"), status
    page.wait_for_selector("#download", state="visible")
    page.wait_for_selector("#gallery img")  # the round trip back through BtoA
    with page.expect_download() as download:
        page.click("#download")
    got = tmp_path / "downloaded" / download.value.suggested_filename
    download.value.save_as(got)
    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
    (expected,) = predict_paths(app.load_translator(bundles["AtoB"]), src, tmp_path / "predicted", progress=False)
    assert got.name == "horse.png"
    a, b = (np.asarray(Image.open(p), np.int16) for p in (got, expected))
    assert got.read_bytes() == expected.read_bytes() or (a.shape == b.shape and np.abs(a - b).max() <= 1)
    assert (tmp_path / "app.png").stat().st_size > 10_000
    assert page.elsewhere == []  # a local page: no fonts, scripts or analytics from other hosts
    if os.environ.get("APP_SCREENSHOT"):  # how docs/app.png is made
        shutil.copyfile(tmp_path / "app.png", os.environ["APP_SCREENSHOT"])


@pytest.mark.timeout(SERVER_START_S + 4 * BROWSER_TIMEOUT_S)
def test_browser_refuses_a_text_file_named_png_and_keeps_working(page, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image at all")
    status = translate_in_page(page, fake)
    assert status.startswith("Refused: notes.png: unreadable image (cannot identify image file notes.png)"), status
    assert "Traceback" not in page.content()
    page.screenshot(path=str(tmp_path / "refused.png"), full_page=True)
    status = translate_in_page(page, picture(tmp_path / "after.png"))
    assert status.startswith("Translated after.png"), status
    page.wait_for_selector("#download", state="visible")


def pick(page, label):
    page.click("#bundle input")
    page.click(f"li:has-text('{label}')")
    page.wait_for_function("([el, label]) => el.innerText.includes(label)", arg=[page.query_selector("#facts"), label])


@pytest.mark.timeout(SERVER_START_S + 4 * BROWSER_TIMEOUT_S)
def test_browser_sketch_canvas_and_psp_variants(page, tmp_path):
    pick(page, "sketch2face")
    page.click("#source label:has-text('canvas')")
    page.click("#canvas button[aria-label=Brush]")
    box = page.query_selector("#canvas canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    for k in range(4):  # one stroke, down and to the right
        page.mouse.move(box["x"] + box["width"] * (0.3 + 0.1 * k), box["y"] + box["height"] * (0.3 + 0.05 * k))
    page.mouse.up()
    page.click("#translate")
    page.wait_for_function("el => el.innerText.startsWith('Translated sketch.png with sketch2face: 256 x 256')",
                           arg=page.query_selector("#status"))
    page.wait_for_selector("#download", state="visible")

    pick(page, "toyfaces")
    page.fill("#variants input[type=number]", "2")
    page.press("#variants input[type=number]", "Enter")
    page.click("label:has-text('fine')")
    status = translate_in_page(page, picture(tmp_path / "face.png", size=(32, 32)))
    assert status.startswith("Translated face.png with toyfaces: 32 x 32 output"), status
    page.wait_for_selector("#gallery :text('variant 1 (seed 1)')")
    assert len(page.query_selector_all("#gallery img")) == 2
    page.screenshot(path=str(tmp_path / "psp.png"), full_page=True)
