"""Run one recipe step: print it as a copyable command, run it, keep its log, show progress.

Every step is one of the plugin's own commands (``w2v2-manifest``, ``fairseq-hydra-train``,
``w2v2-lm``, ``w2v2-infer``) run as a child process, exactly as printed after ``+``. Its full
output goes to ``LOGS/NAME.log``; the console gets a progress bar (training steps: updates
done, with the latest metrics) and, on failure, the log's tail.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from .logs import parse_line

# Console scripts of the package and the module each one runs, for environments where the
# package was not pip-installed (then ``python -m MODULE`` does the same).
_MODULES = {"w2v2-manifest": "w2v2_manifests.cli", "w2v2-infer": "w2v2_plugin.cli.infer",
            "w2v2-lm": "w2v2_plugin.cli.lm", "fairseq-hydra-train": "fairseq_cli.hydra_train"}


class StepError(RuntimeError):
    """A step's command failed; the message names its log."""


class StepResult(NamedTuple):
    name: str
    seconds: float
    log: Path


def resolve(argv: list[str]) -> list[str]:
    """The argv to execute for a printed command: the console script from this Python's
    environment if there, else ``python -m``; ``python`` means this interpreter."""
    head, rest = argv[0], argv[1:]
    if head == "python":
        return [sys.executable, *rest]
    local = Path(sys.executable).parent / head
    if local.exists():
        return [str(local), *rest]
    if shutil.which(head):
        return argv
    if head in _MODULES:
        return [sys.executable, "-m", _MODULES[head], *rest]
    return argv


def run_step(name: str, argv: list[str], logs: Path, total_updates: int | None = None,
             env: dict[str, str] | None = None, show: Callable[[str], None] = print,
             postfix_keys: tuple[str, ...] = ()) -> StepResult:
    """Print ``+ command``, run it with output to ``logs/name.log``; raise StepError on failure.

    With ``total_updates``, fairseq's json log lines drive a progress bar (num_updates) whose
    postfix shows ``postfix_keys`` from the latest ``train_inner`` / ``valid`` record.
    """
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    show("+ " + shlex.join(argv))
    start = time.time()
    child_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    bar = tqdm(total=total_updates, desc=name, unit=" upd", leave=False, mininterval=1.0,
               disable=total_updates is None or not sys.stderr.isatty())
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(resolve(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=child_env, bufsize=1)
        if proc.stdout is None:  # stdout=PIPE always gives one
            raise AssertionError("Popen(stdout=PIPE) returned no stdout")
        post: dict[str, str] = {}
        for line in proc.stdout:
            log.write(line)
            parsed = parse_line(line) if total_updates else None
            if parsed:
                kind, rec = parsed
                if "num_updates" in rec and kind == "train_inner":
                    bar.update(int(rec["num_updates"]) - bar.n)
                for key in postfix_keys:
                    for k in (key, f"valid_{key}"):
                        if k in rec:
                            post[k] = f"{rec[k]:.3g}"
                bar.set_postfix(post, refresh=False)
        code = proc.wait()
    bar.close()
    seconds = time.time() - start
    if code != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        show("\n".join("    | " + t for t in tail))
        raise StepError(f"step {name!r} failed (exit {code}) after {seconds:.0f} s; full log: {log_path}")
    show(f"  ({name}: {seconds:.0f} s, log {log_path})")
    return StepResult(name, seconds, log_path)
