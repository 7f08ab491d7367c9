"""The house rules that keep the runtime deployable without the training stack (style.md,
"Who does what"): torch-free modules stay torch-free, the runtime never imports ``train`` or
``export``, the package's parts import each other without cycles, the default install pulls no
torch, the public surface is importable, and the docs' contract table is the contract's own."""
import ast
import collections
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import cafetalk_rt
from cafetalk_rt.backends import contract

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "cafetalk_rt"
#: The modules that need the [torch] extra (everything else must import without it).
TORCH_MODULES = ("cafetalk_rt.nn", "cafetalk_rt.backends.torch_backend", "cafetalk_rt.backends.torch_cudagraph_backend")
#: Packages a torch-free import must not load (the training/export stack and the heavy extras).
HEAVY = ("torch", "transformers", "sentence_transformers", "matplotlib", "onnx", "export", "train", "av")


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(cafetalk_rt.__path__, "cafetalk_rt."))


def _imports(path: Path) -> list[str]:
    """Every module name an ``import`` / ``from … import`` in ``path`` names (lazy ones too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "cafetalk_rt" else [])
    return names


def test_torch_free_modules_import_without_torch_in_a_clean_interpreter():
    free = [m for m in _modules() if not m.startswith(TORCH_MODULES)]
    assert len(free) > 30 and "cafetalk_rt.backends.onnxruntime_backend" in free and "cafetalk_rt.cli.main" in free
    code = (f"import sys, importlib\nfor m in {free!r}: importlib.import_module(m)\n"
            f"bad = [m for m in {HEAVY!r} if m in sys.modules]\nassert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_runtime_never_imports_train_or_export():
    offenders = [(str(f.relative_to(ROOT)), n) for f in PKG.rglob("*.py") for n in _imports(f)
                 if n.split(".")[0] in ("train", "export")]
    assert not offenders, offenders


def _part(module: str) -> str | None:
    bits = module.split(".")
    return bits[1] if bits[0] == "cafetalk_rt" and len(bits) > 1 else None


def test_parts_import_each_other_without_cycles():
    """Parts are the top-level modules and sub-packages of ``cafetalk_rt``; an arrow is any import
    (lazy ones included) from one part into another."""
    graph = collections.defaultdict(set)
    for f in PKG.rglob("*.py"):
        src = _part(".".join(f.relative_to(ROOT).with_suffix("").parts))
        for n in _imports(f):
            dst = _part(n)
            if src and dst and dst != src:
                graph[src].add(dst)
    done, active = set(), []

    def visit(u):
        assert u not in active, f"import cycle: {' -> '.join(active[active.index(u):] + [u])}"
        if u in done:
            return
        active.append(u)
        for v in sorted(graph[u]):
            visit(v)
        active.pop()
        done.add(u)

    for u in sorted(graph):
        visit(u)
    parts = {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"} | {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert len(parts) <= 17, sorted(parts)


def test_default_install_has_no_training_stack():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    assert core == {"numpy", "soundfile", "soxr", "safetensors", "onnxruntime", "tqdm"}, core
    assert {"torch", "export", "instructions", "preview", "train", "dev"} <= set(project["optional-dependencies"])
    assert any(d.startswith("torch") for d in project["optional-dependencies"]["torch"])


def test_public_surface():
    for name in ("Animator", "AnimateOptions", "Animation", "StreamingAnimator", "load_audio", "ARKIT_NAMES"):
        assert name in cafetalk_rt.__all__ and hasattr(cafetalk_rt, name)
    assert len(cafetalk_rt.ARKIT_NAMES) == cafetalk_rt.NUM_BLENDSHAPES == 52


def test_docs_contract_table_is_generated_from_the_contract():
    """docs/export.md holds ``contract_markdown()`` verbatim between its markers; regenerate with
    ``python -m cafetalk_rt.backends.contract`` when the contract changes."""
    text = (ROOT / "docs" / "export.md").read_text()
    m = re.search(r"<!-- contract:begin -->\n(.*?)<!-- contract:end -->", text, re.S)
    assert m, "docs/export.md lost its contract markers"
    assert m.group(1) == contract.contract_markdown(), "docs/export.md's contract table is stale"
    for kind, spec in contract.GRAPHS.items():
        assert f"**{kind}**" in m.group(1) and all(f"`{t.name}`" in m.group(1) for t in spec.inputs)
