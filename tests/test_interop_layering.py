"""``w2v2_plugin.interop`` sits below models, tasks and criterions: none of its modules may
import them (they import interop; the other direction would be a cycle)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

INTEROP = Path(__file__).resolve().parents[1] / "w2v2_plugin" / "interop"
FORBIDDEN = ("w2v2_plugin.models", "w2v2_plugin.tasks", "w2v2_plugin.criterions")


def imported_modules(path: Path) -> list[str]:
    """Every module an ``import`` / ``from ... import`` of ``path`` names, relative ones made
    absolute (``from ..models import x`` in w2v2_plugin/interop/m.py -> w2v2_plugin.models)."""
    package = ["w2v2_plugin", "interop"]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.append(module)
            if not is_forbidden(module):  # ``from .. import models`` names the module in the alias
                names.extend(f"{module}.{alias.name}" for alias in node.names)
    return names


def is_forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


def forbidden_imports(path: Path) -> list[str]:
    return sorted({name for name in imported_modules(path) if is_forbidden(name)})


def test_interop_package_exists() -> None:
    assert {"checkpoint_io.py", "fairseq_wav2vec2.py", "fairseq_ctc.py", "hf_export.py",
            "pretrained.py"} <= {p.name for p in INTEROP.glob("*.py")}


@pytest.mark.parametrize("path", sorted(INTEROP.glob("*.py")), ids=lambda p: p.name)
def test_interop_does_not_import_models_tasks_or_criterions(path: Path) -> None:
    assert forbidden_imports(path) == [], f"{path.name} imports {forbidden_imports(path)}"


def test_the_check_sees_relative_and_absolute_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from ..models.config import W2v2Config\nfrom .. import tasks\n"
                      "import w2v2_plugin.criterions.ctc\nfrom ..data.labels import load_dictionary\n"
                      "from .checkpoint_io import to_plain\n")
    assert forbidden_imports(sample) == ["w2v2_plugin.criterions.ctc", "w2v2_plugin.models.config",
                                         "w2v2_plugin.tasks"]
