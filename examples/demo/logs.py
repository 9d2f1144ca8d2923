"""Read fairseq's ``common.log_format=json`` training logs into curves.

fairseq's logger writes lines like
``[2026-01-01 10:00:00,000][train_inner][INFO] - {"epoch": 1, "loss": "6.7", "num_updates": "20", ...}``
(``train_inner`` every ``log_interval`` updates, ``train`` at the end of an epoch, and after
each validation a line tagged with the validation subset's name, e.g. ``[dev]``, whose keys
carry that prefix: ``dev_wer``). Values are strings; we turn the numeric ones into floats and
file validation records under ``valid`` with ``valid_`` keys, whatever the subset's name.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

_LINE = re.compile(r"\]\[(?P<kind>[\w.-]+)\]\[INFO\] - (?P<payload>\{.*\})\s*$")


@dataclass
class Curves:
    """Per-kind lists of records (dicts of floats), in log order."""

    train_inner: list[dict[str, float]] = field(default_factory=list)
    valid: list[dict[str, float]] = field(default_factory=list)
    train: list[dict[str, float]] = field(default_factory=list)

    def series(self, kind: str, key: str, x: str = "num_updates") -> tuple[list[float], list[float]]:
        """(x values, y values) of the records of ``kind`` that have both keys."""
        rows = [r for r in getattr(self, kind) if key in r and x in r]
        return [r[x] for r in rows], [r[key] for r in rows]

    def last(self, kind: str, key: str) -> float | None:
        rows = [r for r in getattr(self, kind) if key in r]
        return rows[-1][key] if rows else None


def _floats(record: dict[str, object]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in record.items():
        try:
            out[k] = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue  # e.g. non-numeric fields: not a curve
    return out


def parse_line(line: str) -> tuple[str, dict[str, float]] | None:
    """(kind, record) of one log line, or None for lines that carry no metrics."""
    m = _LINE.search(line)
    if not m:
        return None
    try:
        record = json.loads(m.group("payload"))
    except json.JSONDecodeError:
        return None
    kind, values = m.group("kind"), _floats(record)
    if kind in ("train_inner", "train"):
        return kind, values
    prefix = kind + "_"
    if not any(k.startswith(prefix) for k in values):
        return None  # some other logger's json: not a metrics line
    # A validation subset's record: dev_wer -> valid_wer, dev_num_updates -> num_updates.
    out = {("valid_" + k[len(prefix):] if k.startswith(prefix) else k): v for k, v in values.items()}
    if "valid_num_updates" in out:
        out["num_updates"] = out["valid_num_updates"]
    return "valid", out


def read_log(path: str | Path) -> Curves:
    """Curves of one fairseq log file (missing file: empty curves)."""
    curves = Curves()
    p = Path(path)
    if not p.exists():
        return curves
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        parsed = parse_line(line)
        if parsed:
            kind, record = parsed
            getattr(curves, kind).append(record)
    return curves


def completed_updates(path: str | Path) -> int:
    """Updates a training finished, from its log: the epoch-end ``train`` record's
    ``train_num_updates`` (fairseq writes one when it stops, for whatever reason), else the last
    ``train_inner`` record's; 0 for a log with neither."""
    curves = read_log(path)
    last_epoch = curves.last("train", "train_num_updates")
    if last_epoch is not None:
        return int(last_epoch)
    last_inner = curves.last("train_inner", "num_updates")
    return 0 if last_inner is None else int(last_inner)
