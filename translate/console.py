"""How the command line talks to its user: each of our warnings is one clean line, and library chatter that is
known to be harmless for our runs is filtered.

Python prints a warning as `path:line: Category: message` followed by the source line that raised it; for a
message meant for the user ("images of 250x250 are resized to 256x256 ...") that is noise. `setup()` (called by
the CLI and the demo before anything runs) prints warnings raised in this project's packages as
`warning: <message>`, leaves other libraries' warnings as they are, and drops these known ones:
- Lightning's tip to install its cloud logger `litlogger`, printed at every Trainer construction;
- wandb's "The anonymous setting has no effect" (Lightning's WandbLogger always passes that setting; see
  translate.train.tracking);
- Lightning's internal use of torch's deprecated `LeafSpec` (`_pytree` deprecation).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

PACKAGES = ("translate", "datamodules", "nets", "priors", "safeio")
_ROOT = Path(__file__).resolve().parents[1]
_OURS = tuple(str(_ROOT / p) for p in PACKAGES) + (str(_ROOT / "cli.py"), str(_ROOT / "scripts"))

HARMLESS = (  # (message regex, category) of library warnings that say nothing to our users
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", Warning),
)
HARMLESS_LOGS = {"pytorch_lightning.utilities.rank_zero": ("litlogger",)}  # Lightning's rank_zero_info logger


def is_ours(filename: str) -> bool:
    return str(Path(filename).resolve()).startswith(_OURS)


def _format(message, category, filename, lineno, line=None) -> str:
    if is_ours(filename):
        return f"warning: {message}\n"
    return _library_format(message, category, filename, lineno, line)


_library_format = warnings.formatwarning
_installed = False


class _DropLines(logging.Filter):
    def __init__(self, needles):
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(n in text for n in self.needles)


def setup() -> None:
    """One-line user warnings, harmless library chatter filtered (idempotent)."""
    global _library_format, _installed
    # the format, not the display: warnings recorded by catch_warnings (and pytest) stay recorded. Installed once:
    # Lightning, imported before, is the format this one hands other files on to; imported after, it keeps its
    # own format for its files and hands the others on to this one (so installing again would make a loop)
    if not _installed:
        _library_format, _installed = warnings.formatwarning, True
        warnings.formatwarning = _format
    for pattern, category in HARMLESS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name, needles in HARMLESS_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) for f in logger.filters):
            logger.addFilter(_DropLines(needles))
