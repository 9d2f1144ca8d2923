"""Finding and running KenLM's ``lmplz`` and ``build_binary``.

No Python wheel ships these two tools; ``make kenlm`` (``bash tools/build_kenlm.sh``) compiles
them from the C++ sources in the ``kenlm`` sdist into ``tools/kenlm/bin``. They are looked up,
in order, in ``--kenlm-bin``, ``$KENLM_BIN``, ``tools/kenlm/bin`` of this checkout, and ``PATH``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ..decoding.errors import DecodingError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "tools" / "kenlm" / "bin"
HOW_TO_GET = (f"build them once with 'make kenlm' (or 'bash {REPO_ROOT / 'tools' / 'build_kenlm.sh'}'; needs cmake, "
              f"g++ and apt's libboost-program-options-dev libboost-system-dev libboost-thread-dev "
              f"libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev), or point --kenlm-bin / $KENLM_BIN at a "
              f"directory holding them")


class KenLMTools(NamedTuple):
    lmplz: Path
    build_binary: Path


def find_kenlm_tools(kenlm_bin: str | Path | None = None) -> KenLMTools:
    """Locate ``lmplz`` and ``build_binary``; raise with instructions if either is missing."""
    dirs: list[tuple[str, Path]] = []
    if kenlm_bin:
        dirs.append(("--kenlm-bin", Path(kenlm_bin)))
    elif os.environ.get("KENLM_BIN"):
        dirs.append(("$KENLM_BIN", Path(os.environ["KENLM_BIN"])))
    else:
        dirs.append(("tools/kenlm/bin", DEFAULT_BIN))
    for origin, d in dirs:
        lmplz, bb = d / "lmplz", d / "build_binary"
        if lmplz.is_file() and os.access(lmplz, os.X_OK) and bb.is_file() and os.access(bb, os.X_OK):
            return KenLMTools(lmplz, bb)
        if origin != "tools/kenlm/bin":  # an explicit location must be right: do not fall back silently
            raise DecodingError(f"{d}: no executable lmplz and build_binary there ({origin}); {HOW_TO_GET}")
    on_path = shutil.which("lmplz"), shutil.which("build_binary")
    if on_path[0] and on_path[1]:
        return KenLMTools(Path(on_path[0]), Path(on_path[1]))
    raise DecodingError(f"KenLM's lmplz/build_binary not found (looked in {DEFAULT_BIN} and PATH); {HOW_TO_GET}")


def have_kenlm_tools(kenlm_bin: str | Path | None = None) -> bool:
    try:
        find_kenlm_tools(kenlm_bin)
        return True
    except DecodingError:
        return False


def _run(cmd: Sequence[str | Path], stdin_path: Path | None, stdout_path: Path | None, what: str) -> None:
    stdin = stdin_path.open("rb") if stdin_path else subprocess.DEVNULL
    stdout = stdout_path.open("wb") if stdout_path else subprocess.DEVNULL
    try:
        # an argv list (no shell) starting with the KenLM tool find_kenlm_tools resolved
        proc = subprocess.run(list(map(str, cmd)), stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)  # noqa: S603
    finally:
        if stdin_path:
            stdin.close()  # type: ignore[union-attr]  # reason: opened above when the path is set
        if stdout_path:
            stdout.close()  # type: ignore[union-attr]  # reason: opened above when the path is set
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        last = next((line for line in reversed(err) if line.strip() and not line.startswith("*")), "no message")
        raise DecodingError(f"{what} failed (exit {proc.returncode}): {last.strip()[:300]}")


def run_lmplz(tools: KenLMTools, corpus: Path, arpa_out: Path, order: int, memory: str = "20%",
              prune: Sequence[int] = (), tmp_dir: Path | None = None) -> None:
    """Modified Kneser-Ney ARPA from a one-sentence-per-line corpus (written atomically).

    ``--discount_fallback`` lets lmplz estimate discounts on small corpora (where the
    count-of-counts statistics it needs are degenerate) instead of failing.
    """
    tmp = arpa_out.with_name(f".{arpa_out.name}.tmp")
    cmd: list[str | Path] = [tools.lmplz, "-o", str(order), "-S", memory, "--discount_fallback"]
    if tmp_dir is not None:
        cmd += ["-T", str(tmp_dir)]
    if prune:
        cmd += ["--prune", *map(str, prune)]
    try:
        _run(cmd, corpus, tmp, f"lmplz on {corpus}")
        os.replace(tmp, arpa_out)
    finally:
        tmp.unlink(missing_ok=True)


def run_build_binary(tools: KenLMTools, arpa: Path, binary_out: Path, structure: str = "trie") -> None:
    """KenLM binary (``trie``: small; ``probing``: fastest) from an ARPA file (written atomically)."""
    if structure not in ("trie", "probing"):
        raise DecodingError(f"binary structure must be trie or probing (got {structure!r})")
    tmp = binary_out.with_name(f".{binary_out.name}.tmp")
    try:
        _run([tools.build_binary, structure, arpa, tmp], None, None, f"build_binary on {arpa}")
        os.replace(tmp, binary_out)
    finally:
        tmp.unlink(missing_ok=True)
