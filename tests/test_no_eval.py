"""No module of the project calls the builtin ``eval`` or ``exec``: config strings and
checkpoints are parsed (``ast.literal_eval``-style), never run."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("w2v2_plugin", "w2v2_manifests", "w2v2_common", "examples", "benchmarks", "testing_support", "tests")


def _python_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py"))


def _eval_exec_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{path.relative_to(ROOT)}:{node.lineno}: {node.func.id}()"
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec")]


def test_the_walk_finds_the_packages() -> None:
    files = {p.relative_to(ROOT).as_posix() for p in _python_files()}
    assert "w2v2_plugin/models/conv_geometry.py" in files and "w2v2_plugin/inference/emissions.py" in files


def test_the_check_sees_a_call() -> None:
    tree = ast.parse("x = eval('1')\nexec('y = 2')\nmodel.eval()")
    names = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    assert names == ["eval", "exec"]  # model.eval() is an attribute call, not the builtin


@pytest.mark.parametrize("package", PACKAGES)
def test_no_builtin_eval_or_exec(package: str) -> None:
    calls = [c for p in _python_files() if p.relative_to(ROOT).parts[0] == package for c in _eval_exec_calls(p)]
    assert not calls, "builtin eval/exec called:\n" + "\n".join(calls)
