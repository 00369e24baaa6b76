"""The docs stay true to the tree: README.md, docs/*.md and benchmarks/README.md.

- every relative link and image resolves to a file or folder of the repository, and an anchor (`page.md#heading`,
  `#heading`) names a heading of its page (GitHub's heading ids);
- every file path the docs name under a package folder (`configs/pix2pix/demo.yaml`, `translate/deploy/export.py`, ...)
  exists;
- every command line shown in a code block (or an inline code span) that runs the CLI (`python cli.py ...`,
  `.venv/bin/python cli.py ...`, `translate ...`, `.venv/bin/translate ...`) parses with the current parser,
  `translate.cli.build_parser()`, the way `translate.cli.main` parses it;
- the README is a front door: at most 200 lines, with `make demo` and `make test`, linking every docs page;
- every image in docs/ is shown by some page.
"""
from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 200
# the CLI's program forms, as token prefixes; everything after them goes to the parser
PROGRAMS = (("python", "cli.py"), ("python3", "cli.py"), (".venv/bin/python", "cli.py"), ("translate",),
            (".venv/bin/translate",))
WRAPPERS = ("srun", "time", "nice", "exec")  # words that may stand before the program
# command lines that cannot parse on purpose (placeholders); keep this empty unless unavoidable
UNPARSEABLE: Set[str] = set()
# folders whose file paths the docs may name; such a path must exist
PATH_RE = re.compile(r"(?<![\w./-])((?:configs|translate|nets|datamodules|priors|scripts|benchmarks|tests|csrc|docs)"
                     r"/[\w./-]*\.(?:yaml|py|md|png|cu|cpp|h|sh))\b")
LINK_RE = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SRC_RE = re.compile(r"<(?:img|a)\s[^>]*?(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
FENCE_RE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
SHELL_LANGS = ("", "bash", "sh", "shell", "console")


def doc_files() -> List[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---- reading markdown ------------------------------------------------------------------------------------------
def split_code(text: str) -> Tuple[str, List[Tuple[str, int, List[str]]]]:
    """(the text with fenced code blocks blanked out, [(language, first line number, lines) per fenced block])."""
    prose, blocks = [], []
    lang, start, body = None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE_RE.match(line)
        if lang is None and fence:
            lang, start, body = fence.group(2).lower(), number + 1, []
            prose.append("")
        elif lang is not None and fence and line.strip() in ("```", "~~~"):
            blocks.append((lang, start, body))
            lang = None
            prose.append("")
        elif lang is not None:
            body.append(line)
            prose.append("")
        else:
            prose.append(line)
    assert lang is None, "unclosed code fence"
    return "\n".join(prose), blocks


def without_inline_code(text: str) -> str:
    return re.sub(r"(`+)(.+?)\1", "", text)


def inline_code(text: str) -> Iterator[Tuple[int, str]]:
    """(line number, text) of each single-backtick code span; a span may wrap within its paragraph."""
    for m in re.finditer(r"(?<!`)`((?:[^`\n]|\n(?!\s*\n))+)`(?!`)", text):
        yield text.count("\n", 0, m.start()) + 1, " ".join(m.group(1).split())


def slug(heading: str) -> str:
    """GitHub's id of a heading: markup dropped, lower case, punctuation but '-' and '_' dropped, spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    prose, _ = split_code(path.read_text())
    seen: Dict[str, int] = {}
    ids = set()
    for line in prose.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.add(base if n == 0 else f"{base}-{n}")
    return ids


# ---- links -----------------------------------------------------------------------------------------------------
def links(path: Path) -> List[Tuple[int, str]]:
    prose, _ = split_code(path.read_text())
    found = []
    for number, line in enumerate(prose.splitlines(), 1):
        line = without_inline_code(line)
        found += [(number, m.group(1)) for m in LINK_RE.finditer(line)]
        found += [(number, m.group(1)) for m in HTML_SRC_RE.finditer(line)]
    return found


def broken_links(path: Path) -> List[str]:
    bad = []
    for number, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{rel(path)}:{number}: {target}"
        if not dest.exists():
            bad.append(f"{where} (no such file: {dest.relative_to(ROOT) if ROOT in dest.parents else dest})")
        elif ROOT != dest and ROOT not in dest.parents:
            bad.append(f"{where} (points outside the repository)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{where} (no heading '#{anchor}' in {rel(dest)})")
    return bad


@pytest.mark.parametrize("path", doc_files(), ids=rel)
def test_every_relative_link_and_image_resolves(path):
    assert path.is_file(), f"{rel(path)} is missing"
    assert not broken_links(path), "broken links:\n  " + "\n  ".join(broken_links(path))


@pytest.mark.parametrize("path", doc_files(), ids=rel)
def test_every_file_path_named_in_the_docs_exists(path):
    missing = sorted({f"{rel(path)}: {m.group(1)}" for m in PATH_RE.finditer(path.read_text())
                      if not (ROOT / m.group(1)).exists()})
    assert not missing, "named but missing:\n  " + "\n  ".join(missing)


def test_the_docs_name_the_configs_they_use():
    """The path check above must see the configs: if its pattern broke, it would pass on nothing."""
    named = {m.group(1) for p in doc_files() for m in PATH_RE.finditer(p.read_text())}
    assert {"configs/pix2pix/demo.yaml", "configs/pix2pix/my_pairs.yaml", "configs/cyclegan/horse2zebra.yaml",
            "configs/psp/super_resolution.yaml", "configs/prior/toyfaces64.yaml"} <= named


# ---- command lines -----------------------------------------------------------------------------------------------
def logical_lines(lines: List[str], first: int) -> Iterator[Tuple[int, str]]:
    """Lines with backslash continuations joined, with the number of their first line."""
    buf, start = "", first
    for i, line in enumerate(lines):
        if not buf:
            start = first + i
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        yield start, buf + line
        buf = ""
    if buf:
        yield start, buf


def cli_args(line: str) -> List[List[str]]:
    """The argument lists of every CLI call in one shell line (`a && b; c` are several), [] if none."""
    line = re.sub(r"^\s*\$\s+", "", line)  # a prompt
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        return []
    calls, command = [], []
    for token in tokens + [";"]:
        if token in ("&&", "||", ";", "|"):
            calls.append(command)
            command = []
        else:
            command.append(token)
    found = []
    for command in calls:
        while command and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", command[0]) or command[0] in WRAPPERS):
            command = command[1:]  # VAR=value, srun, ...
        for program in PROGRAMS:
            if tuple(command[:len(program)]) == program:
                found.append(command[len(program):])
                break
    return found


def commands(path: Path) -> List[Tuple[int, str, List[str]]]:
    """(line number, line, arguments) of every CLI call in the page's shell code blocks and inline code spans."""
    text = path.read_text()
    prose, blocks = split_code(text)
    found = []
    for lang, first, body in blocks:
        if lang in SHELL_LANGS:
            for number, line in logical_lines(body, first):
                found += [(number, line.strip(), args) for args in cli_args(line)]
    for number, span in inline_code(prose):  # `translate` alone names the package: a call needs arguments
        found += [(number, span, args) for args in cli_args(span) if args]
    return found


def parse_error(args: List[str]) -> str:
    """'' if `translate.cli.main` would accept these arguments, else argparse's message. Like main: options first,
    then `key=value` overrides may also follow options (argparse leaves them over)."""
    from translate.cli import build_parser

    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parsed, extra = parser.parse_known_args(args)
            if extra and not (hasattr(parsed, "overrides") and all("=" in e and not e.startswith("-") for e in extra)):
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # argparse's way of refusing (status 2); --help exits with 0 and is a valid line
        if e.code not in (0, None):
            return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {e.code}"
    return ""


@pytest.mark.parametrize("path", doc_files(), ids=rel)
def test_every_command_line_shown_parses_with_the_current_cli(path):
    bad = [f"{rel(path)}:{number}: {line}\n    -> {error}" for number, line, args in commands(path)
           if line not in UNPARSEABLE and (error := parse_error(args))]
    assert not bad, "command lines the CLI rejects:\n  " + "\n  ".join(bad)


def test_the_command_check_sees_the_commands():
    """If the block or program detection broke, the parse test would pass on nothing."""
    calls = [args for p in doc_files() for _, _, args in commands(p)]
    subcommands = {args[0] for args in calls if args}
    assert len(calls) >= 30 and {"fit", "export", "predict", "import", "evaluate", "invert"} <= subcommands


def test_a_wrong_option_is_caught():
    assert parse_error(["fit", "--config", "configs/pix2pix/demo.yaml", "--overwite"])  # a typo, not a prefix
    assert parse_error(["predict", "--model", "bundle/"])  # --input and --output missing
    assert not parse_error(["fit", "--config", "configs/pix2pix/demo.yaml", "--resume", "last", "seed=1"])


# ---- the README as a front door -------------------------------------------------------------------------------
def test_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text()
    n = len(text.splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; at most {README_MAX_LINES} (move detail to docs/)"
    assert "make demo" in text and "make test" in text


def test_readme_links_every_docs_page():
    linked = {(README.parent / target.partition("#")[0]).resolve() for _, target in links(README)}
    unlinked = [rel(p) for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_every_image_in_docs_is_shown_by_a_page():
    shown = {(p.parent / target.partition("#")[0]).resolve() for p in doc_files() for _, target in links(p)}
    images = [p for p in sorted((ROOT / "docs").iterdir()) if p.suffix.lower() in (".png", ".jpg", ".gif", ".svg")]
    assert not [rel(p) for p in images if p.resolve() not in shown]


# ---- the checker itself ----------------------------------------------------------------------------------------
def test_a_broken_link_or_anchor_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    page = tmp_path / "page.md"
    page.write_text("# A title\n\n[ok](#a-title) [gone](missing.md) [bad anchor](#nowhere) "
                    "![img](img.png)\n\n```bash\n[not a link](inside_code.md)\n```\n")
    (tmp_path / "img.png").write_bytes(b"")
    bad = broken_links(page)
    assert len(bad) == 2 and "missing.md" in bad[0] and "#nowhere" in bad[1]
