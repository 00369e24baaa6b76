"""Translate a file or a folder with a Translator: batched by image size, names kept, inputs never touched.

`translate_files` is the one translation path: `predict_paths` (the `predict` command) writes what it yields, and
the web app (translate.tools.app) shows it, so both give the same bytes for the same file and bundle."""
from __future__ import annotations

import contextlib
import sys
from concurrent.futures import Future, ThreadPoolExecutor
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from datamodules.io import (IMG_EXTENSIONS, BadImageError, DataError, displayed_size, label_palette, list_images,
                            read_image, read_image_as, read_label_map, write_image)
from safeio import ConfigError, file_on_path

IO_THREADS = 2  # threads that decode the next batch and encode outputs while the net runs (PIL lets go of the GIL)
SIDE_BY_SIDE = "side_by_side"  # subfolder of the output folder for input | output [| variants] images


class Outputs(list):
    """The files predict_paths wrote, in input order; `already`: the inputs skip_existing left out."""

    already: int = 0


def predict_paths(translator, input: str | Path, output: str | Path, batch_size: int = 8,
                  progress: bool = True, variants: int = 0, latent_mask: Optional[Sequence[int]] = None,
                  mix_alpha: Optional[float] = None, seed: int = 0,
                  resize_outputs: Optional[int] = None, side_by_side: bool = False,
                  skip_existing: bool = False) -> Outputs:
    """Translate `input` (an image file, or a folder whose images are translated) into the folder `output`;
    return the files written, in input order.

    variants: also write that many style-mixed outputs per input as `<stem>_mix<k><suffix>` (pSp bundles, eager
    backend): the codes at `latent_mask` come from random W codes (seed + k), blended by `mix_alpha` if given.

    resize_outputs: average-pool every output to this many pixels per side (pSp's --resize_outputs: its 1024-px
    faces at 256, as the paper's losses and metrics see them); None keeps the translator's resolution.

    side_by_side: also write `output/side_by_side/<name>`: the input | the output | its variants, side by side at
    the output's size (pSp's --couple_outputs). The input is enlarged with nearest neighbour, so that the pixels of
    a low-resolution input stay visible, and reduced with Lanczos; label maps are shown in the VOC colours.

    A translator of label maps (`label_nc` > 0, e.g. segmentation-to-face) reads each file as class indices (a gray
    or palette PNG), resized with nearest neighbour and one-hot encoded as in training.

    skip_existing: leave out inputs whose outputs (variants and side-by-side image included) are all in `output`
    already, e.g. to finish a run that was interrupted (images are written atomically, so none is half written).
    They are counted on stdout and in the result's `already`, not in its list.

    Each input is decoded once; the side-by-side image shows that same decoded input. The translation itself is
    `translate_files` (the web app's too), each result written by `Translated.write`.

    Outputs keep their file names (and so their format). Writing into an input folder (or any folder inside it)
    and overwriting an input file are refused. Unreadable inputs are skipped and reported on stderr: one line each
    (`warning: skipping <file>: <reason>`) and their count at the end.
    """
    src, out = Path(input), Path(output)
    if src.is_dir():
        files, in_folder = list_images(src), src
    elif src.is_file():
        if src.suffix.lower() not in IMG_EXTENSIONS:
            raise DataError(f"expected an image file ({', '.join(IMG_EXTENSIONS)}) or a folder, got {src}")
        files, in_folder = [src], None
    else:
        raise FileNotFoundError(f"input not found: {src}")
    options = dict(batch_size=batch_size, variants=variants, latent_mask=latent_mask, mix_alpha=mix_alpha,
                   resize_outputs=resize_outputs)
    check_options(translator, **options)  # before any output is written
    _check_output(out, files, in_folder, variants, side_by_side)
    result = Outputs()
    if skip_existing:
        done = {f for f in files if all((out / name).is_file() for name in _outputs(f, variants, side_by_side))}
        if done:
            print(f"{len(done)} of {len(files)} images already translated in {out}: left out (--skip-existing)")
            files, result.already = [f for f in files if f not in done], len(done)
    replaced = sum((out / name).exists() for f in files for name in _outputs(f, variants, side_by_side))
    if replaced:
        warnings.warn(f"{out}: {replaced} existing file(s) will be replaced by this run's outputs", stacklevel=2)

    skipped: List[Path] = []
    written: Dict[Path, Path] = {}
    out.mkdir(parents=True, exist_ok=True)
    with _progress(progress) as bar:
        task = bar.add_task("translating", total=len(files)) if bar is not None else None

        def skip(f: Path, reason: str) -> None:
            _warn_skip(f, reason, skipped)
            if bar is not None:
                bar.advance(task)

        with ThreadPoolExecutor(IO_THREADS, thread_name_prefix="encode") as pool:
            pending: List[Tuple[Path, Future]] = []
            for done in translate_files(translator, files, seed=seed, keep_source=side_by_side, on_skip=skip,
                                        **options):
                pending.append((done.path, pool.submit(done.write, out, side_by_side)))
                while pending and (pending[0][1].done() or len(pending) > 2 * batch_size):
                    f, job = pending.pop(0)
                    written[f] = job.result()
                    if bar is not None:
                        bar.advance(task)
            for f, job in pending:
                written[f] = job.result()
                if bar is not None:
                    bar.advance(task)
    if skipped:
        names = ", ".join(str(s) for s in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        print(f"skipped {len(skipped)} unreadable image(s): {names}", file=sys.stderr)
    result.extend(written[f] for f in files if f in written)
    return result


@dataclass
class Translated:
    """One input translated by `translate_files`: what predict writes and the web app shows."""

    path: Path  # the input file
    output: np.ndarray  # (H, W, C) uint8, at the translator's resolution (or resize_outputs)
    variants: List[np.ndarray]  # pSp's style-mixed outputs, each like `output`
    source: Optional[np.ndarray]  # with keep_source: the decoded input ((h, w, 3) RGB or (h, w, 1) class indices)
    label_nc: int = 0  # > 0: `source` is a label map of this many classes

    def side_by_side(self) -> np.ndarray:
        """The input | the output | its variants, as one RGB image (needs keep_source)."""
        if self.source is None:
            raise ValueError("side_by_side needs the decoded input: translate with keep_source=True")
        return side_by_side_image(self.source, [self.output, *self.variants], self.label_nc)

    def write(self, out: Path, side_by_side: bool = False) -> Path:
        """Write the output as `out/<input name>` (same format), the variants as `<stem>_mix<k><suffix>` and with
        `side_by_side` the input | output image in `out/side_by_side/`; return the output's path."""
        path = write_image(out / self.path.name, self.output)
        for name, v in zip(output_names(self.path, len(self.variants))[1:], self.variants):
            write_image(out / name, v)
        if side_by_side:
            write_image(out / SIDE_BY_SIDE / self.path.name, self.side_by_side())
        return path


def check_options(translator, batch_size: int = 8, variants: int = 0,
                  latent_mask: Optional[Sequence[int]] = None, mix_alpha: Optional[float] = None,
                  resize_outputs: Optional[int] = None) -> None:
    """A ConfigError naming the option (and its command-line flag) that this translator cannot take."""
    if variants < 0:
        raise ConfigError(f"variants: expected a count >= 0, got {variants}", key="--variants")
    if variants:
        translator.check_variants(latent_mask)
    elif latent_mask is not None or mix_alpha is not None:
        raise ConfigError("latent_mask and mix_alpha (--latent-mask, --mix-alpha) choose how variants are mixed: give "
                          "the number of variants (--variants N) as well", key="--latent-mask")
    if translator.input_nc not in (1, 3) and not getattr(translator, "label_nc", 0):
        raise DataError(f"image files are read as 1 or 3 channels; this translator takes {translator.input_nc}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected an int >= 1, got {batch_size!r}", key="--batch-size")
    if resize_outputs is not None and (not isinstance(resize_outputs, int) or resize_outputs < 1):
        raise ConfigError(f"resize_outputs: expected a side in pixels >= 1, got {resize_outputs!r}",
                          key="--resize-outputs")


def translate_files(translator, files: Sequence[Path], on_skip: Callable[[Path, str], None], batch_size: int = 8,
                    variants: int = 0, latent_mask: Optional[Sequence[int]] = None,
                    mix_alpha: Optional[float] = None, seed: int = 0, resize_outputs: Optional[int] = None,
                    keep_source: bool = False, max_pixels: Optional[int] = None) -> Iterator[Translated]:
    """Translate image files: the one path under `predict` and the web app. Yields a `Translated` per readable
    file, batched by image size (at most `batch_size` together); a file that cannot be used goes to
    `on_skip(path, reason)` instead (a header that cannot be read, more than `max_pixels` pixels, an undecodable
    or wrong-mode image). Options as in `predict_paths`, checked by `check_options`."""
    check_options(translator, batch_size, variants, latent_mask, mix_alpha, resize_outputs)
    mix = (variants, latent_mask, mix_alpha, seed) if variants else None
    pool_out = (lambda t: F.adaptive_avg_pool2d(t, resize_outputs)) if resize_outputs else (lambda t: t)
    label_nc = getattr(translator, "label_nc", 0)
    chunks = [paths[i:i + batch_size] for paths in _group_by_size(files, on_skip, max_pixels).values()
              for i in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(IO_THREADS, thread_name_prefix="decode") as pool:
        def decode(chunk: List[Path]) -> List[Future]:
            return [pool.submit(_read, translator, f, label_nc, keep_source) for f in chunk]

        ahead = decode(chunks[0]) if chunks else []
        for k, chunk in enumerate(chunks):
            decoded, ahead = ahead, decode(chunks[k + 1]) if k + 1 < len(chunks) else []
            for f, y, extra, source in _translate(translator, chunk, decoded, on_skip, mix, keep_source):
                yield Translated(f, translator.to_uint8(pool_out(y)), [translator.to_uint8(pool_out(v)) for v in extra],
                                 source, label_nc)


def output_names(f: Path, variants: int) -> List[str]:
    return [f.name] + [f"{f.stem}_mix{k}{f.suffix}" for k in range(variants)]


def _outputs(f: Path, variants: int, side_by_side: bool) -> List[str]:
    """Every file an input `f` gets in the output folder, relative to it."""
    return output_names(f, variants) + ([f"{SIDE_BY_SIDE}/{f.name}"] if side_by_side else [])


def side_by_side_image(source: np.ndarray, outputs: Sequence[np.ndarray], label_nc: int = 0) -> np.ndarray:
    """The input `source` | each of `outputs` ((H, W, C) uint8, all one size) as one (H, W', 3) uint8 image.
    source: the input as read, (h, w, 3) uint8 RGB, or with label_nc > 0 (h, w, 1) class indices (shown in the VOC
    colours)."""
    h, w = outputs[0].shape[:2]
    shown = Image.fromarray(label_palette(label_nc)[source[:, :, 0]] if label_nc else source)
    enlarge = shown.width <= w and shown.height <= h
    shown = shown.resize((w, h), Image.NEAREST if enlarge else Image.LANCZOS)
    rgb = [np.repeat(o, 3, axis=2) if o.shape[2] == 1 else o for o in outputs]
    return np.concatenate([np.asarray(shown), *rgb], axis=1)


def _check_output(out: Path, files: List[Path], in_folder: Path | None, variants: int = 0,
                  side_by_side: bool = False) -> None:
    blocker = file_on_path(out)
    if blocker is not None:
        raise DataError(f"output must be a folder, got an existing file: {blocker}")
    if in_folder is not None and _inside(out, in_folder):
        raise DataError(f"refusing to write into the input folder: output {out} is inside {in_folder}")
    if in_folder is not None and side_by_side and _inside(in_folder, out / SIDE_BY_SIDE):
        raise DataError(f"refusing to write into the input folder: side-by-side images go to {out / SIDE_BY_SIDE}")
    inputs = {f.resolve() for f in files}
    targets = [(f, out / name) for f in files for name in _outputs(f, variants, side_by_side)]
    clash = [f for f, target in targets if target.resolve() in inputs]
    if clash:
        raise DataError(f"refusing to overwrite the input file {clash[0]}: choose an output folder other than "
                        f"{out}")
    owner: Dict[str, Path] = {}
    for f in files:
        for name in output_names(f, variants):
            if name in owner:
                raise DataError(f"the outputs of {owner[name].name} and {f.name} would both be written to {out / name}"
                                f"; rename one of the inputs")
            owner[name] = f


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _warn_skip(path: Path, reason: str, skipped: List[Path]) -> None:
    """Report an input that is left out: one line on stderr (not a Python warning, which adds a source line)."""
    skipped.append(path)
    print(f"warning: skipping {path}: {reason}", file=sys.stderr)


def _group_by_size(files: Sequence[Path], on_skip: Callable[[Path, str], None],
                   max_pixels: Optional[int] = None) -> Dict[Tuple[int, int], List[Path]]:
    """Files by (width, height), read from their headers without decoding the pixels (each input is decoded once,
    by _translate, which also batches by the decoded shape); files without a readable header, or with more than
    `max_pixels` pixels, go to `on_skip`."""
    groups: Dict[Tuple[int, int], List[Path]] = defaultdict(list)
    for f in files:
        try:
            with Image.open(f) as img:
                size = displayed_size(img)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # UnidentifiedImageError: OSError
            on_skip(f, f"unreadable image ({e})")
            continue
        if max_pixels is not None and size[0] * size[1] > max_pixels:
            on_skip(f, f"{size[0]}x{size[1]} is {size[0] * size[1]:,} pixels, over the limit of {max_pixels:,}")
            continue
        groups[size].append(f)
    return groups


def _read(translator, f: Path, label_nc: int, keep: bool) -> Tuple[torch.Tensor, Optional[np.ndarray]]:
    """Decode `f` once -> (the net's input, and if `keep` the input for side_by_side_image: (h, w, 3) uint8 RGB, or
    the (h, w, 1) class indices of a label map)."""
    if label_nc:  # segmentation-to-image: files are maps of class indices
        labels = read_label_map(f, label_nc)
        return translator.from_label_map(labels), labels if keep else None
    if not keep:
        return translator.from_array(read_image(f, translator.input_nc)), None
    a, rgb = read_image_as(f, (translator.input_nc, 3))  # one decode: the net's channels and RGB to show
    return translator.from_array(a), rgb


def _translate(translator, paths: List[Path], decoded: List[Future], on_skip: Callable[[Path, str], None], mix=None,
               keep: bool = False):
    """Collect the decoding of `paths` (what failed goes to `on_skip`), translate them in batches of equal size;
    yield (path, output, style-mixed outputs (n, C, H, W) or (), the decoded input if `keep` else None)."""
    batches: Dict[Tuple[int, ...], List[Tuple[Path, torch.Tensor, Optional[np.ndarray]]]] = defaultdict(list)
    for f, job in zip(paths, decoded):
        try:
            x, source = job.result()
        except (BadImageError, DataError) as e:
            on_skip(f, str(e).removeprefix(f"{f}: "))
            continue
        batches[tuple(x.shape)].append((f, x, source))
    for items in batches.values():
        x = torch.stack([x for _, x, _ in items])
        y = translator.translate_batch(x)
        v = translator.variants(x, *mix) if mix is not None else None  # (n, N, C, H, W)
        for i, (f, _, source) in enumerate(items):
            yield f, y[i], (v[:, i] if v is not None else ()), source


@contextlib.contextmanager
def _progress(enabled: bool):
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn()) as bar:
        yield bar
