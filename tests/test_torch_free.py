"""w2v2_common and w2v2_manifests import on a machine without torch or fairseq, and the shared
formats and error base behave as their users expect."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from w2v2_common.errors import W2v2Error
from w2v2_common.units import (
    DictLine,
    parse_dict_line,
    read_dict_symbols,
    symbols_to_text,
    to_letters,
    write_dict_lines,
)

REPO = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: a meta-path hook makes torch/fairseq (and so w2v2_plugin, which
# imports fairseq) unimportable, then every module of the two packages is imported.
_BLOCKED_IMPORT = r"""
import importlib, pkgutil, sys

BLOCKED = ("torch", "torchaudio", "fairseq", "w2v2_plugin")

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked in this test: {name}")
        return None

sys.meta_path.insert(0, Block())
for pkg_name in ("w2v2_common", "w2v2_manifests"):
    pkg = importlib.import_module(pkg_name)
    for info in pkgutil.walk_packages(pkg.__path__, pkg_name + "."):
        if info.name != "w2v2_manifests.__main__":  # runs the CLI
            importlib.import_module(info.name)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("w2v2_common", "w2v2_manifests")))
"""


def test_common_and_manifests_import_with_torch_and_fairseq_blocked() -> None:
    proc = subprocess.run([sys.executable, "-c", _BLOCKED_IMPORT], cwd=REPO, capture_output=True, text=True,  # noqa: S603
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    for module in ("w2v2_common.errors", "w2v2_common.fileio", "w2v2_common.units", "w2v2_manifests.cli",
                   "w2v2_manifests.builder", "w2v2_manifests.writer"):
        assert f"'{module}'" in proc.stdout


def test_user_errors_share_one_base() -> None:
    from w2v2_manifests.errors import BadFilesError, ManifestError, TranscriptError
    from w2v2_manifests.text import NormalizationError
    from w2v2_plugin.criterions.ctc import NonFiniteLossError
    from w2v2_plugin.data.labels import LabelError
    from w2v2_plugin.decoding.errors import DecodingError

    for cls, builtin in ((ManifestError, ValueError), (TranscriptError, ValueError), (BadFilesError, ValueError),
                         (NormalizationError, ValueError), (DecodingError, ValueError), (LabelError, ValueError),
                         (NonFiniteLossError, FloatingPointError)):
        assert issubclass(cls, W2v2Error) and issubclass(cls, builtin), cls


@pytest.mark.parametrize("line,allow_overwrite,expected", [
    ("A 5", True, DictLine("A", 5, False)),
    ("A 5  ", True, DictLine("A", 5, False)),
    ("x y 3", True, DictLine("x y", 3, False)),
    ("| -1", True, DictLine("|", -1, False)),
    ("A 5 #fairseq:overwrite", True, DictLine("A", 5, True)),
    ("A 5 #fairseq:overwrite", False, None),
    ("A", True, None),
    ("A five", True, None),
])
def test_parse_dict_line(line: str, allow_overwrite: bool, expected: DictLine | None) -> None:
    assert parse_dict_line(line, allow_overwrite) == expected


def test_dict_written_is_read_back(tmp_path: Path) -> None:
    buf = io.StringIO()
    write_dict_lines(buf, [("E", 3), ("|", 2), ("\u2581A", 1)])
    assert buf.getvalue() == "E 3\n| 2\n\u2581A 1\n"
    (tmp_path / "dict.ltr.txt").write_text(buf.getvalue() + "\n", encoding="utf-8")
    assert read_dict_symbols(str(tmp_path / "dict.ltr.txt")) == {"E", "|", "\u2581A"}


def test_letters_round_trip() -> None:
    letters = to_letters("HELLO WORLD")
    assert letters == "H E L L O | W O R L D |"
    assert symbols_to_text(letters.split()) == "HELLO WORLD"
    assert symbols_to_text(["\u2581HEL", "LO", "\u2581WORLD"]) == "HELLO WORLD"


def _imported_modules(path: Path) -> set[str]:
    """Modules a file imports (any level, lazy imports included); relative ones keep their dots."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_decoder_core_and_lm_tooling_do_not_import_torch() -> None:
    # ``import w2v2_plugin`` itself loads fairseq, so this is checked on the sources: the decoder
    # core (decoding/) and lm/ stay torch-free, and the core depends on neither application package.
    core = sorted((REPO / "w2v2_plugin" / "decoding").glob("*.py"))
    for path in core + sorted((REPO / "w2v2_plugin" / "lm").glob("*.py")):
        roots = {name.split(".")[0] for name in _imported_modules(path) if not name.startswith(".")}
        assert not roots & {"torch", "torchaudio", "fairseq"}, (path, roots)
    for path in core:
        for name in _imported_modules(path):
            absolute = "w2v2_plugin." + name[2:] if name.startswith("..") else name
            assert not absolute.startswith(("w2v2_plugin.inference", "w2v2_plugin.lm", "w2v2_plugin.cli")), (path, name)
