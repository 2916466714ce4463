"""The engine's shape: a torch-free core, no import cycles, one registry that every
method passes through (each registered method builds tiny, trains one step, localises
and round-trips its checkpoint)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from CXRWeakLocLib.checkpoint import load_model, save_model
from CXRWeakLocLib.core.card import ModelCard
from CXRWeakLocLib.core.findings import BOXED_FINDINGS
from CXRWeakLocLib.core.radiograph import Radiograph
from CXRWeakLocLib.localize import Localizer
from CXRWeakLocLib.methods import METHODS
from CXRWeakLocLib.train.config import load_config
from CXRWeakLocLib.train.engine import train

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "CXRWeakLocLib"

#: What the exporters, the Slicer panel and ``cxrweakloc models`` import: none may load torch.
TORCH_FREE = ["CXRWeakLocLib.export", "CXRWeakLocLib.core.card", "CXRWeakLocLib.core.results",
              "CXRWeakLocLib.core.masks", "CXRWeakLocLib.core.layout",
              "CXRWeakLocLib.core.anatomy", "CXRWeakLocLib.core.radiograph"]


def _imports_torch(modules: list[str]) -> list[str]:
    """The heavy packages a fresh interpreter has loaded after importing ``modules``."""
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(','.join(m for m in ('torch', 'monai', 'captum') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=True)
    return [m for m in done.stdout.strip().split(",") if m]


def test_the_exporters_and_the_core_import_no_torch():
    assert _imports_torch(["CXRWeakLocLib.export"]) == []
    assert _imports_torch(TORCH_FREE) == []


def test_the_check_sees_torch_when_it_is_imported():
    """The check above can fail: the engine's inference path does load torch."""
    assert "torch" in _imports_torch(["CXRWeakLocLib.localize"])


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, module: str, modules: set[str]) -> set[str]:
    """Engine modules ``path`` imports anywhere (function-local imports included)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            root = (f"{base}.{node.module}" if node.module else base) if node.level else (
                node.module or "")
            names = [f"{root}.{alias.name}" for alias in node.names] + [root]
        else:
            continue
        found.update(name for name in names if name in modules and name != module)
    return found


def import_graph() -> dict[str, set[str]]:
    """Engine module -> the engine modules it imports."""
    paths = {_module_name(p): p for p in ENGINE.rglob("*.py")}
    return {name: _imported(path, name, set(paths)) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_engine_has_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50 and graph["CXRWeakLocLib.checkpoint"]  # the walk found the engine
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    module = ENGINE / "methods" / "dm" / "objectives.py"
    assert "CXRWeakLocLib.methods.cam" in _imported(
        module, "CXRWeakLocLib.methods.dm.objectives", set(import_graph()))


# ------------------------------------------------------------- every registered method

FINDINGS = list(BOXED_FINDINGS)


def _config(folder: Path, method: str) -> Path:
    smoke = METHODS[method].smoke
    lines = [
        "[run]", f'name = "{method}-smoke"', f'output = "{folder / "run"}"', "",
        "[data]", 'dataset = "synthetic"', "synthetic_count = 24", "val_fraction = 0.25", "",
        "[model]", f'method = "{method}"', "input_size = 32",
        f"findings = {json.dumps(FINDINGS)}",
        'backbone = { name = "resnet10", width = 0.125, output_stride = 16 }',
        f"options = {_toml(smoke.options)}", "",
        "[optim]", "epochs = 1", "batch_size = 4", "",
        "[loss]", *(f"{key} = {json.dumps(value)}" for key, value in smoke.loss.items()),
    ]
    path = folder / "run.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(options: dict) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items()) + " }"


@pytest.mark.parametrize("method", sorted(name for name, m in METHODS.items() if m.training))
def test_every_trainable_method_trains_a_step_saves_loads_and_localises(method, tmp_path):
    result = train(load_config(_config(tmp_path, method)), device="cpu")
    loaded = load_model(result.model_folder)
    assert loaded.card.method == method
    _localises_and_round_trips(loaded, tmp_path)


@pytest.mark.parametrize("method", sorted(name for name, m in METHODS.items()
                                          if not m.training))
def test_every_untrained_method_builds_localises_and_round_trips(method, tmp_path):
    from CXRWeakLocLib.methods import build_network

    card = ModelCard(name=f"{method}-smoke", method=method,
                     architecture={"backbone": {"name": "resnet10", "width": 0.125},
                                   "options": METHODS[method].smoke.options},
                     findings=FINDINGS, input_size=32)
    network = build_network(method, card.architecture, len(FINDINGS))
    _localises_and_round_trips(load_model(save_model(tmp_path / "model", card, network)),
                               tmp_path)


def _localises_and_round_trips(loaded, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    radiograph = Radiograph(pixels=rng.random((48, 40), dtype=np.float32))
    (result,) = Localizer(loaded).localize([radiograph], findings="all")
    assert [f.name for f in result.findings] == FINDINGS
    assert all(f.heatmap.shape == (48, 40) and f.mask.shape == (48, 40) for f in result.findings)
    assert (result.findings[0].healed is not None) == loaded.method.heals
    again = load_model(save_model(tmp_path / "again", loaded.card, loaded.network))
    (repeated,) = Localizer(again).localize([radiograph], findings="all")
    for first, second in zip(result.findings, repeated.findings, strict=True):
        assert first.probability == pytest.approx(second.probability, abs=1e-6)
        np.testing.assert_allclose(first.heatmap, second.heatmap, atol=1e-5)


def test_the_slicer_requirements_are_the_engine_dependencies():
    from release.sync import slicer_requirements

    written = (REPO / "CXRWeakLoc" / "Resources" / "requirements.txt").read_text()
    assert written == slicer_requirements(), "run python -m release.sync"
    names = [line.split(">")[0].split("=")[0] for line in written.splitlines()
             if line and not line.startswith("#")]
    assert "torch" in names and "monai" in names
    assert not {"numpy", "SimpleITK", "tensorboard"} & set(names)
