"""The package's shape: imports flow down the layers of ../shared/DESIGN.md, with no cycle, the tests are laid
out by layer, and the package runs from an installed wheel (card templates and recipes are package data, not
checkout files)."""

import ast
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGE = ROOT / "src" / "medssr_hub"
# Each module's layer; a module may import its own layer and the layers below. Stages never import each other.
LAYERS = {
    "medssr_hub": 1,
    "medssr_hub.paths": 1,
    "medssr_hub.schema": 1,
    "medssr_hub.config": 1,
    "medssr_hub.utils": 1,
    "medssr_hub.names": 1,
    "medssr_hub.errors": 1,
    "medssr_hub.modeling": 2,
    "medssr_hub.hub": 2,
    "medssr_hub.resolve": 2,
    "medssr_hub.records": 2,
    "medssr_hub.columns": 2,
    "medssr_hub.decontamination": 2,
    "medssr_hub.generation": 3,
    "medssr_hub.answers": 3,
    "medssr_hub.voting": 3,
    "medssr_hub.synthesis": 4,
    "medssr_hub.labeling": 4,
    "medssr_hub.training": 4,
    "medssr_hub.evaluation": 4,
    "medssr_hub.data.metrics": 4,  # the `evaluate` metric module (package data that evaluate.load imports)
    "medssr_hub.runs": 5,
    "medssr_hub.commands": 5,
    "medssr_hub.cli": 5,
}
STAGES = ("medssr_hub.synthesis", "medssr_hub.labeling", "medssr_hub.training", "medssr_hub.evaluation")


def modules() -> dict[str, Path]:
    found = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports, module-level and function-local imports alike."""
    mods = modules()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = owner(name) if name.startswith("medssr_hub") else None
                if target and target != m and not m.startswith(target + "."):
                    graph[m].add(target)
    return graph


def layer_of(module: str) -> tuple[int, str]:
    group = max((g for g in LAYERS if module == g or module.startswith(g + ".")), key=len)
    return LAYERS[group], group


def test_every_module_has_a_layer():
    assert all(layer_of(m) for m in modules())


def test_imports_flow_downward_with_no_cycle():
    graph = import_graph()
    upward = [
        f"{m} (layer {layer_of(m)[0]}) imports {t} (layer {layer_of(t)[0]})"
        for m, targets in graph.items()
        for t in targets
        if layer_of(t)[0] > layer_of(m)[0]
    ]
    assert not upward, upward
    across = [
        f"{m} imports {t}"
        for m, targets in graph.items()
        for t in targets
        if layer_of(m)[1] in STAGES and layer_of(t)[1] in STAGES and layer_of(m)[1] != layer_of(t)[1]
    ]
    assert not across, f"stages import each other: {across}"
    assert not any(t.startswith("medssr_hub.records") for t in graph["medssr_hub.hub"]), "hub imports records"
    # A cycle: a module that reaches itself (depth-first over the graph).
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, cycles[:3]


MAX_LINES = 400  # issue 23: one job per module


def test_no_module_is_over_400_lines():
    sizes = {str(f.relative_to(PACKAGE)): len(f.read_text().splitlines()) for f in PACKAGE.rglob("*.py")}
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines: {over}"


def test_init_files_hold_exports_only():
    """Logic lives in modules named by their job; a package's __init__ re-exports (issue 23)."""
    logic = {}
    for init in PACKAGE.rglob("__init__.py"):
        tree = ast.parse(init.read_text())
        defs = [
            n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        if defs:
            logic[str(init.relative_to(PACKAGE))] = defs
    assert not logic, logic


TESTS = ROOT / "tests"
# Property-based tests that cross modules (loaders, extraction, the synthesis parser, config loading).
CROSS_MODULE_UNIT_TESTS = {"test_fuzz.py"}


def test_tests_are_laid_out_by_layer():
    """unit/ mirrors the package (a module's tests in unit/test_<module>*.py, a sub-package's in
    unit/<sub-package>/), end-to-end runs sit in e2e/, helpers in the support package; the product never
    imports the tests."""
    assert sorted(p.name for p in TESTS.glob("test_*.py")) == []
    names = {m.rsplit(".", 1)[-1] for m in modules() if m.count(".") == 1}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} - {"data"}
    for test in (TESTS / "unit").rglob("test_*.py"):
        area = test.parent.relative_to(TESTS / "unit")
        if area.parts:
            assert area.parts[0] in packages, f"{test}: no sub-package {area.parts[0]}"
        else:
            assert test.name in CROSS_MODULE_UNIT_TESTS or any(
                test.stem == f"test_{n}" or test.stem.startswith(f"test_{n}_") for n in names
            ), f"{test}: names no module of the package"
    assert (TESTS / "e2e").is_dir() and (TESTS / "support" / "__init__.py").exists()
    imports_tests = [
        m for m, f in modules().items() if any(n.split(".")[0] == "tests" for n in imported_names(f))
    ]
    assert imports_tests == [], f"the product imports from the tests: {imports_tests}"


def imported_names(path: Path) -> set[str]:
    """Every absolute module name a file imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_stage_probes_a_backend_with_hasattr():
    """Backends declare what they can do (`capabilities`); stages ask it instead of probing attributes."""
    from medssr_hub.generation.base import Capabilities, GenerationBackend
    from medssr_hub.generation.embedded import EmbeddedBackend
    from medssr_hub.generation.endpoint import EndpointBackend
    from medssr_hub.generation.offline_vllm import VLLMBackend

    probes = []
    for module in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hasattr":
                target = ast.unparse(node.args[0])
                if "backend" in target:
                    probes.append(f"{module.relative_to(PACKAGE)}: hasattr({target}, ...)")
    assert not probes, probes
    for backend in (EmbeddedBackend, EndpointBackend, VLLMBackend):
        assert isinstance(backend.capabilities, Capabilities), backend
    assert EmbeddedBackend.capabilities.loglikelihood and EndpointBackend.capabilities.is_async
    assert "capabilities" in GenerationBackend.__annotations__


def test_the_checker_finds_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above can fail: a package with records <-> hub and a ground module importing a stage."""
    fake = tmp_path / "medssr_hub"
    for name, text in {
        "__init__.py": "",
        "records.py": "from medssr_hub.hub import x\n",
        "hub/__init__.py": "def f():\n    from medssr_hub.records import y\n",
        "paths.py": "import medssr_hub.synthesis.vignettes\n",
        "synthesis/__init__.py": "",
        "synthesis/vignettes.py": "",
    }.items():
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    graph = import_graph()
    assert graph["medssr_hub.records"] == {"medssr_hub.hub"} and graph["medssr_hub.hub"] == {
        "medssr_hub.records"
    }
    with pytest.raises(AssertionError, match="paths \\(layer 1\\) imports medssr_hub.synthesis.vignettes"):
        test_imports_flow_downward_with_no_cycle()


def test_a_wheel_installed_outside_the_checkout_runs_a_stage(tmp_path):
    """Build the wheel, install it into a fresh venv (dependencies from this one), run synthesis from a
    folder with no checkout in sight: its recipe and card template come from the package data."""
    root = PACKAGE.parents[1]
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    [wheel] = wheels.glob("medssr_hub-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, str(wheel)],
        check=True,
        capture_output=True,
    )
    # The dependencies come from this venv's site-packages, added after the fresh one (whose medssr_hub wins).
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "deps.pth").write_text("\n".join(deps) + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEDSSR_CARDS_DIR")}
    env["MEDSSR_HUB_ROOT"] = str(tmp_path / "hub")
    run = subprocess.run(
        [python, "-m", "medssr_hub.cli", "synthesize", "--config", "recipes/synthesis/config_demo.yaml",
         "--num_questions", "3", "--output_dir", "out"],
        cwd=work, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    where = subprocess.run(
        [python, "-c", "import medssr_hub; print(medssr_hub.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(site), where  # the wheel's copy ran, not the checkout's
    card = (tmp_path / "hub" / "datasets" / "medssr-hub" / "smollm2-synthetic").rglob("README.md")
    assert "MedSSR knowledge-enhanced synthetic questions" in next(card).read_text()
