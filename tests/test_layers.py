"""The project's import layering (docs/architecture.md): floors from the bottom, arrows never pointing up, no import
cycle, and no Lightning in the deploy code and the tools that run without it. Every import counts, module-level and
function-local alike: an import hidden in a function is still an arrow."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("safeio", "priors", "nets", "datamodules", "translate")

# the floors, from the bottom; a module may import its own floor and the ones below it
FLOORS = [
    ("ground: files and safe loading", ("safeio",)),
    ("ops", ("priors.ops",)),
    ("priors", ("priors",)),
    ("nets", ("nets",)),
    ("data", ("datamodules",)),
    ("methods and deploy", ("translate.methods", "translate.deploy", "translate")),
    ("training driver", ("translate.train",)),
    ("tools", ("translate.tools",)),
    ("command line", ("translate.cli", "translate.console", "cli")),
]
DEPLOY = ("translate.deploy", "translate")  # and every module under translate.deploy
LIGHTNING = ("pytorch_lightning", "lightning", "lightning_fabric")


def project_modules():
    mods = {"cli": ROOT / "cli.py"}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


def import_graph():
    """(project edges, third-party top-level names) per module, from every import statement in its source."""
    mods = project_modules()

    def resolve(name):
        while name:
            if name in mods:
                return name
            name = name.rpartition(".")[0]
        return None

    edges, external = {m: set() for m in mods}, {m: set() for m in mods}
    for m, path in mods.items():
        package = m if path.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [(a.name, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [(f"{base}.{a.name}", base) for a in node.names]
            else:
                continue
            for full, base in targets:
                target = resolve(full) or resolve(base)
                if target is None:
                    external[m].add(base.split(".")[0])
                elif target != m:
                    edges[m].add(target)
    return edges, external


def floor_of(module):
    best = None  # the longest matching prefix decides: priors.ops before priors
    for level, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (level, len(p))
    return None if best is None else best[0]


EDGES, EXTERNAL = import_graph()


def test_every_module_has_a_floor():
    assert [m for m in EDGES if floor_of(m) is None] == []


def test_no_import_points_up_a_floor():
    up = [f"{m} ({FLOORS[floor_of(m)][0]}) imports {t} ({FLOORS[floor_of(t)][0]})"
          for m, targets in EDGES.items() for t in targets if floor_of(t) > floor_of(m)]
    assert up == []


def test_methods_and_deploy_do_not_import_each_other_but_for_checkpoints():
    """Side by side on one floor: the methods read checkpoint files (translate.deploy.checkpoints), nothing else
    of deploy, and deploy imports no method."""
    cross = [f"{m} imports {t}" for m, targets in EDGES.items() for t in targets
             if (m.startswith("translate.methods") and t.startswith("translate.deploy")
                 and t != "translate.deploy.checkpoints")
             or (m.startswith("translate.deploy") and t.startswith("translate.methods"))]
    assert cross == []


def test_the_ground_floor_imports_no_project_package():
    assert {m: t for m, t in EDGES.items() if m.startswith("safeio") and not all(x.startswith("safeio") for x in t)} \
        == {}


def strongly_connected(edges):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_modules_or_packages():
    assert strongly_connected(EDGES) == []
    top = lambda m: m.split(".")[0]  # noqa: E731
    packages = {top(m): set() for m in EDGES}
    for m, targets in EDGES.items():
        packages[top(m)] |= {top(t) for t in targets if top(t) != top(m)}
    assert strongly_connected(packages) == []


def test_the_cycle_finder_finds_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_deploy_code_never_imports_lightning():
    """Bundles and checkpoints are read and run without Lightning, following every project import."""
    def reach(m, seen):
        for t in EDGES[m]:
            if t not in seen:
                seen.add(t)
                reach(t, seen)
        return seen

    for m in [m for m in EDGES if m in DEPLOY or m.startswith("translate.deploy.")]:
        heavy = sorted(x for x in reach(m, {m}) if EXTERNAL[x] & set(LIGHTNING))
        assert heavy == [], f"{m} reaches Lightning through {heavy}"


@pytest.mark.parametrize("argv", [
    ["evaluate", "--pred", "missing_pred", "--ref", "missing_ref"],
    ["predict", "--model", "missing_bundle", "--input", "missing_in", "--output", "out"],
])
def test_evaluate_and_predict_run_without_lightning(argv, tmp_path):
    code = (f"import sys; from translate.cli import main; rc = main({argv!r}); "
            f"loaded = [m for m in sys.modules if m.split('.')[0] in {LIGHTNING!r}]; "
            "assert rc == 2 and not loaded, (rc, loaded[:5])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
