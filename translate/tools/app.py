"""The web app: `translate app --model BUNDLE [--model ...]` serves a local page that translates uploaded images.

The page is built with Gradio, an optional extra (`pip install -e ".[app]"`), imported only by `build_page` and
`serve`; everything else here (loading the bundles, what the picker shows, translating one upload) runs without
it and is what the unit tests call. A translation goes through `translate.deploy.predict.translate_files`, the
function under `translate predict`, and is written by the same `Translated.write`: the file offered for download
has the bytes `predict` writes for the same file and bundle: the page runs the backend `predict` picks
(`app_backend`; pSp bundles stay on eager PyTorch for their style-mixed variants).

What the page offers per bundle, from its translator.json: label maps (segmentation bundles, `label_nc` > 0) are
uploaded as gray or palette PNGs of class indices and shown in the VOC colours; one-channel bundles (sketches)
also take a drawing on a canvas; pSp bundles draw style-mixed variants (count, latent mask, mix strength) shown
as a gallery; a CycleGAN bundle whose other direction was given too (`export --direction both` writes both into
one folder) also shows the round trip back. An upload that is not an image, has the wrong mode for the bundle or
more pixels than `max_pixels` is refused with a one-line message on the page, and the server keeps serving.

The server binds to 127.0.0.1 unless told otherwise; any other address is printed with a warning.
"""
from __future__ import annotations

import ipaddress
import shutil
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from datamodules.io import IMG_EXTENSIONS, label_palette, to_channels, write_image
from safeio.errors import ConfigError
from translate.deploy.inference import Translator, load_translator, predict_backend, read_meta
from translate.deploy.predict import Translated, translate_files

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860
MAX_PIXELS = 4096 * 4096  # default limit of an upload's width x height (--max-pixels), checked from its header
MAX_UPLOAD = "64mb"  # Gradio refuses larger uploads before they reach us
IMAGE_HEIGHT = 320  # pixels of the page that the input and the output are shown in (the download is full size)
GALLERY_HEIGHT = 280  # pixels of the page for the variants or the round trip
CANVAS_SIZE = 256  # pixels per side of the sketch canvas (the size of most sketch-to-image training data)
MAX_VARIANTS = 8  # the variants slider's top (each one is a full pass through the StyleGAN decoder)
MASK_LEVELS = ("coarse", "medium", "fine")  # StyleGAN's layer groups, as `interpolate --mix`
BUNDLE_MASK, LAYERS_MASK = "bundle's", "layers"  # the other two latent-mask choices
INSTALL_HINT = 'the web app needs Gradio, an optional extra: pip install -e ".[app]" (or: pip install gradio)'


class Rejected(ValueError):
    """An upload or a setting the page refuses; the message is shown on the page as it is."""


@dataclass
class Model:
    """One bundle given with --model, loaded once, as the page's picker lists it."""

    label: str  # the picker's entry: the bundle folder's name (its parent's too where names repeat)
    folder: Path
    translator: Translator
    partner: Optional["Model"] = field(default=None, repr=False)  # CycleGAN: the other direction, when given

    @property
    def meta(self) -> Dict[str, Any]:
        return self.translator.meta

    @property
    def input_kind(self) -> str:
        """'label map', 'sketch' (one channel: upload or draw) or 'image'."""
        if self.translator.label_nc:
            return "label map"
        return "sketch" if self.translator.input_nc == 1 else "image"

    @property
    def is_psp(self) -> bool:
        return self.meta.get("method") == "psp"

    @property
    def mixes(self) -> bool:
        """Whether the page offers style-mixed variants: pSp bundles on the eager backend."""
        try:
            self.translator.check_variants([0])
        except ValueError:
            return False
        return True

    def n_styles(self) -> int:
        """How many W codes the pSp net's decoder takes (the layers a latent mask picks from)."""
        return int(self.translator.check_variants([0]).n_styles)

    def facts(self) -> str:
        """What the bundle is, from its translator.json, as Markdown lines."""
        t, meta = self.translator, self.meta
        if t.label_nc:
            takes = f"label maps of {t.label_nc} classes (gray or palette PNG of class indices)"
        else:
            takes = "gray images or sketches" if t.input_nc == 1 else "RGB images"
        size = (f"resized to {t.input_size} x {t.input_size}" if t.input_size else
                f"any size (padded to a multiple of {t.size_multiple})")
        lines = [f"**{meta.get('method', 'unknown method')}** bundle `{self.folder}`",
                 f"- takes: {takes}, {size}",
                 f"- gives: {t.output_nc}-channel images",
                 f"- direction: {meta.get('direction') or 'not recorded'}",
                 f"- backend: {t.backend}"]
        generator = meta.get("generator")
        if isinstance(generator, dict) and generator.get("name"):
            lines.append(f"- generator: {generator['name']}")
        if self.is_psp and not self.mixes:
            lines.append(f"- style mixing: needs the eager backend (this is {t.backend}; start with --backend auto)")
        elif self.is_psp:
            lines.append(f"- style mixing: latent mask {meta.get('latent_mask') or 'none'}, mix strength "
                         f"{meta.get('mix_alpha') if meta.get('mix_alpha') is not None else 'full (1)'}")
        if self.partner is not None:
            lines.append(f"- round trip: back through `{self.partner.folder}` ({self.partner.meta.get('direction')})")
        return "\n".join(lines)


def app_backend(path: str | Path, backend: str = "auto", device: str = "cpu") -> str:
    """The backend the page runs a bundle on: `backend` when named; for "auto", the one `translate predict` picks
    (onnxruntime on the CPU when the bundle has its graph), so a download has predict's bytes, except for pSp
    bundles, which stay on "auto" (eager) because the page offers their style-mixed variants."""
    if backend != "auto" or read_meta(path)[1].get("method") == "psp":
        return backend
    return predict_backend(path, device)


def load_models(paths: Sequence[str | Path], backend: str = "auto", device: str = "cpu") -> Dict[str, Model]:
    """The bundles given with --model, by picker label, in the order given. A CycleGAN bundle and its other
    direction (same parent folder) are paired for the round trip."""
    if not paths:
        raise ConfigError("translate app: give at least one bundle with --model", key="--model")
    folders = [Path(p) for p in paths]
    if len({f.resolve() for f in folders}) < len(folders):
        raise ConfigError(f"translate app: a bundle is given twice in --model {' '.join(map(str, paths))}",
                          key="--model")
    models = [Model(_label(f, folders), f, load_translator(f, backend=app_backend(f, backend, device), device=device))
              for f in folders]
    for m in models:
        if m.meta.get("method") != "cyclegan" or m.meta.get("direction") not in ("AtoB", "BtoA"):
            continue
        for other in models:
            if (other is not m and other.meta.get("method") == "cyclegan"
                    and other.meta.get("direction") not in (None, m.meta["direction"])
                    and other.folder.resolve().parent == m.folder.resolve().parent):
                m.partner = other
    return {m.label: m for m in models}


def _label(folder: Path, folders: List[Path]) -> str:
    """The folder's name; with its parent's where the name says only the direction (`export --direction both`
    writes OUT/AtoB and OUT/BtoA) or where another bundle has the same name."""
    name = folder.resolve().name
    if name in ("AtoB", "BtoA") or sum(f.resolve().name == name for f in folders) > 1:
        return f"{folder.resolve().parent.name}/{name}"
    return name


def latent_mask(model: Model, choice: str, layers: str = "") -> Optional[List[int]]:
    """The page's latent-mask choice -> layer indices (None: the bundle's own)."""
    from priors.generate import parse_seeds

    from translate.tools.invert import mix_layers

    if choice == BUNDLE_MASK:
        return None
    if choice in MASK_LEVELS:
        return mix_layers(model.n_styles(), choice)
    if choice == LAYERS_MASK:
        if not layers.strip():
            raise Rejected("layers: give the layers to mix, e.g. 8-17")
        try:
            mask = parse_seeds(layers, "layers")
        except ValueError as e:
            raise Rejected(f"{e} (e.g. 8-17 or 4,5,6)") from e
        top = model.n_styles() - 1
        if any(not 0 <= i <= top for i in mask):
            raise Rejected(f"layers: this net has layers 0..{top}, got {layers}")
        return mask
    raise Rejected(f"latent mask: expected one of {[BUNDLE_MASK, *MASK_LEVELS, LAYERS_MASK]}, got {choice!r}")


@dataclass
class Result:
    """One upload translated: what the page shows."""

    shown_input: np.ndarray  # the decoded input as RGB (label maps in the VOC colours)
    output: np.ndarray  # (H, W, C) uint8, as written to `output_file`
    output_file: Path  # the full-resolution output, as predict writes it
    gallery: List[Tuple[np.ndarray, str]]  # pSp's variants or CycleGAN's round trip, with captions


def translate_upload(model: Model, upload: str | Path, out: Path, variants: int = 0,
                     mask: Optional[List[int]] = None, mix_alpha: Optional[float] = None, seed: int = 0,
                     max_pixels: Optional[int] = MAX_PIXELS) -> Result:
    """Translate one uploaded file into the folder `out` (new for each request) with `translate_files`; a file
    that cannot be used raises Rejected naming it and why."""
    upload = Path(upload)
    if upload.suffix.lower() not in IMG_EXTENSIONS:
        raise Rejected(f"{upload.name}: not an image file (expected {', '.join(IMG_EXTENSIONS)})")
    if not variants:
        mask = mix_alpha = None

    def refuse(path: Path, reason: str) -> None:
        raise Rejected(f"{path.name}: {_unplaced(reason, path)}")

    try:
        (done,) = translate_files(model.translator, [upload], refuse, variants=variants, latent_mask=mask,
                                  mix_alpha=mix_alpha, seed=seed, keep_source=True, max_pixels=max_pixels)
    except Rejected:
        raise
    except ValueError as e:  # what the translator refuses (a variant option, a fixed graph size)
        raise Rejected(f"{upload.name}: {_unplaced(str(e), upload)}") from e
    out.mkdir(parents=True, exist_ok=True)
    output_file = done.write(out)
    gallery = [(v, f"variant {k} (seed {seed + k})") for k, v in enumerate(done.variants)]
    if model.partner is not None:
        back = model.partner.translator(done.output[:, :, 0] if done.output.shape[2] == 1 else done.output)
        gallery.append((back, f"round trip: back through {model.partner.label}"))
    return Result(_shown(done), done.output, output_file, gallery)


def _unplaced(message: str, path: Path) -> str:
    """`message` with the upload's name where it names the file: where the server keeps uploads is not shown."""
    return message.replace(repr(str(path)), path.name).replace(str(path), path.name)


def _shown(done: Translated) -> np.ndarray:
    if done.label_nc:
        return label_palette(done.label_nc)[done.source[:, :, 0]]
    return done.source


def save_sketch(composite: np.ndarray, out: Path) -> Path:
    """The canvas's drawing ((H, W, 4) RGBA, transparent where nothing was drawn) as out/sketch.png, composited
    on white as image files with alpha are read."""
    a = np.asarray(composite)
    if a.ndim not in (2, 3) or a.dtype != np.uint8:
        raise Rejected(f"the canvas sent an unexpected image ({a.dtype} {a.shape})")
    out.mkdir(parents=True, exist_ok=True)
    return write_image(out / "sketch.png", to_channels(Image.fromarray(a), 3, "canvas"))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_max_pixels(n: int) -> int:
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"--max-pixels: expected a pixel count >= 1, got {n!r}", key="--max-pixels")
    return n


# ---- the page (Gradio) ----------------------------------------------------------------------------------------
def build_page(models: Dict[str, Model], work: Path, max_pixels: int = MAX_PIXELS):
    """The Gradio Blocks of the page; each request writes into a new folder under `work`."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool
    import gradio as gr

    first = next(iter(models.values()))
    counter = iter(range(1 << 62))

    def controls(label: str):
        m = models[label]
        sketch, psp = m.input_kind == "sketch", m.mixes
        alpha = m.meta.get("mix_alpha")
        return (m.facts(), gr.update(visible=sketch, value="upload"), gr.update(visible=False),
                gr.update(visible=psp), gr.update(value=1.0 if alpha is None else float(alpha)),
                gr.update(label=_upload_label(m), visible=True),
                gr.update(visible=_has_gallery(m), value=[], label=_gallery_label(m)))

    def source_changed(source: str):
        return gr.update(visible=source == "upload"), gr.update(visible=source == "canvas")

    def run(label, source, upload, canvas, variants, mask_choice, layers, alpha, seed):
        empty = (None, None, gr.update(value=None, visible=False), [])
        try:
            m = models[label]
            out = work / f"request{next(counter):06d}"
            if source == "canvas" and m.input_kind == "sketch":
                if not canvas or canvas.get("composite") is None:
                    raise Rejected("draw a sketch on the canvas first")
                path = save_sketch(canvas["composite"], out / "canvas")
            elif upload is None:
                raise Rejected("upload an image first")
            else:
                path = Path(upload)
            n = int(variants) if m.mixes else 0
            mask = latent_mask(m, mask_choice, layers) if n else None
            r = translate_upload(m, path, out, variants=n, mask=mask, mix_alpha=float(alpha) if n else None,
                                 seed=int(seed), max_pixels=max_pixels)
        except ValueError as e:  # Rejected, and what the bundle refuses (e.g. a latent mask for too few codes)
            return (f"**Refused:** {e}", *empty)
        except Exception as e:  # noqa: BLE001 - the page shows one line; the server's console keeps the traceback
            traceback.print_exc()
            return (f"**Error:** {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}",
                    *empty)
        h, w = r.output.shape[:2]
        status = f"Translated `{path.name}` with `{label}`: {w} x {h} output, to download below."
        return (status, r.shown_input, _displayable(r.output), gr.update(value=str(r.output_file), visible=True),
                [(_displayable(img), caption) for img, caption in r.gallery])

    with gr.Blocks(title="translate", analytics_enabled=False) as page:
        gr.Markdown("# translate\nPick a bundle, give it an image, and download the translation at full size.")
        with gr.Row():
            with gr.Column(scale=1):
                picker = gr.Dropdown(list(models), value=first.label, label="bundle", elem_id="bundle")
                facts = gr.Markdown(first.facts(), elem_id="facts")
                source = gr.Radio(["upload", "canvas"], value="upload", label="input",
                                  visible=first.input_kind == "sketch", elem_id="source")
                upload = gr.File(label=_upload_label(first), file_types=["image"], type="filepath",
                                 elem_id="upload")
                canvas = gr.Sketchpad(label="sketch: pick the brush, draw in black on white", visible=False,
                                      type="numpy", image_mode="RGBA", canvas_size=(CANVAS_SIZE, CANVAS_SIZE),
                                      elem_id="canvas",
                                      brush=gr.Brush(colors=["#000000"], default_size=4, color_mode="fixed"))
                with gr.Group(visible=first.mixes) as psp_box:
                    variants = gr.Slider(0, MAX_VARIANTS, value=0, step=1, label="style-mixed variants",
                                         elem_id="variants")
                    mask_choice = gr.Radio([BUNDLE_MASK, *MASK_LEVELS, LAYERS_MASK], value=BUNDLE_MASK,
                                           label="latent mask (layers that take the random style)")
                    layers = gr.Textbox(label="layers (with 'layers'), e.g. 8-17", value="")
                    alpha = gr.Slider(0.0, 1.0, value=1.0 if first.meta.get("mix_alpha") is None
                                      else float(first.meta["mix_alpha"]), step=0.05, label="mix strength")
                    seed = gr.Number(value=0, precision=0, label="seed of the first variant")
                go = gr.Button("Translate", variant="primary", elem_id="translate")
                status = gr.Markdown("", elem_id="status")
            with gr.Column(scale=2):
                with gr.Row():
                    shown_in = gr.Image(label="input", format="png", interactive=False, height=IMAGE_HEIGHT,
                                        elem_id="input-image")
                    shown_out = gr.Image(label="output", format="png", interactive=False, height=IMAGE_HEIGHT,
                                         elem_id="output-image")
                download = gr.DownloadButton("Download the output (full resolution)", visible=False,
                                             elem_id="download")
                gallery = gr.Gallery(label=_gallery_label(first), format="png",
                                     columns=4, fit_columns=False, height=GALLERY_HEIGHT, preview=False,
                                     object_fit="contain",
                                     visible=_has_gallery(first), elem_id="gallery")
        picker.change(controls, picker, [facts, source, canvas, psp_box, alpha, upload, gallery])
        source.change(source_changed, source, [upload, canvas])
        go.click(run, [picker, source, upload, canvas, variants, mask_choice, layers, alpha, seed],
                 [status, shown_in, shown_out, download, gallery])
    return page


def _has_gallery(m: Model) -> bool:
    """pSp bundles show their variants, CycleGAN bundles with the other direction their round trip."""
    return m.mixes or m.partner is not None


def _gallery_label(m: Model) -> str:
    return "style-mixed variants" if m.mixes else "round trip"


def _upload_label(m: Model) -> str:
    if m.input_kind == "label map":
        return f"label map ({m.translator.label_nc} classes: a gray or palette PNG of class indices)"
    return "sketch or gray image" if m.input_kind == "sketch" else "image"


def _displayable(a: np.ndarray) -> np.ndarray:
    return a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a


def serve(paths: Sequence[str | Path], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          max_pixels: int = MAX_PIXELS, backend: str = "auto", device: str = "cpu") -> None:
    """Load the bundles and serve the page until interrupted (Ctrl-C)."""
    check_max_pixels(max_pixels)
    models = load_models(paths, backend=backend, device=device)
    if not is_loopback(host):
        print(f"warning: serving on {host}: anyone who can reach this machine on port {port} can use the page "
              f"and upload files to it; the default {DEFAULT_HOST} keeps it to this machine", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="translate-app-"))
    try:
        page = build_page(models, work, max_pixels)
        print(f"serving {len(models)} bundle(s) ({', '.join(models)}) on http://{host}:{port} (Ctrl-C stops)",
              flush=True)
        launch(page, host, port)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def launch(page, host: str, port: int) -> None:
    """Serve the Blocks `page` on host:port until interrupted: no share link, no calls home, no fonts fetched from
    elsewhere, one translation at a time."""
    import gradio as gr

    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    page.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, share=False, inbrowser=False, quiet=True, ssr_mode=False,
        max_file_size=MAX_UPLOAD, show_error=False, theme=theme, footer_links=[])
