"""The demo's results: a table (markdown + json) and a PNG of the training curves."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from w2v2_common.fileio import atomic_path, write_text_atomic

from .logs import Curves

# wav2vec 2.0 paper (Baevski et al. 2020, Table 1/9), BASE pretrained on LS-960, fine-tuned on
# Libri-light's labeled subsets: LibriSpeech test-clean / test-other WER.
PAPER_BASE: dict[tuple[int, str], tuple[float, float]] = {
    (10, "viterbi"): (46.9, 50.9), (10, "4-gram"): (9.1, 15.6),
    (60, "viterbi"): (24.5, 29.7), (60, "4-gram"): (5.5, 11.3),
    (600, "viterbi"): (11.1, 17.6), (600, "4-gram"): (4.3, 9.5),
}


@dataclass
class Row:
    model: str            # "scratch" | "pretrained"
    decoder: str          # "viterbi" | "4-gram"
    test_wer: float
    test_cer: float
    dev_wer: float | None
    lm_weight: float | None
    word_score: float | None

    def paper(self, labeled_minutes: float) -> str:
        if self.model != "pretrained":
            return "n/a (no from-scratch baseline)"
        nearest = min({m for m, _ in PAPER_BASE}, key=lambda m: abs(m - labeled_minutes))
        clean, other = PAPER_BASE[(nearest, self.decoder)]
        size = f"{nearest} min" if nearest < 60 else f"{nearest // 60} h"
        return f"{clean} / {other} (BASE, {size})"


def _fmt(x: float | None, digits: int = 1, sign: bool = False) -> str:
    return "-" if x is None else f"{x:{'+' if sign else ''}.{digits}f}"


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def improvements(rows: list[Row]) -> dict[str, dict[str, float | None]]:
    """Per decoder, what pretraining bought: scratch minus pretrained (positive = pretrained
    better), for dev WER, test WER and test CER; decoders missing either model are left out."""
    by = {(r.model, r.decoder): r for r in rows}
    out: dict[str, dict[str, float | None]] = {}
    for decoder in dict.fromkeys(r.decoder for r in rows):
        s, p = by.get(("scratch", decoder)), by.get(("pretrained", decoder))
        if s and p:
            out[decoder] = {"dev_wer": _diff(s.dev_wer, p.dev_wer), "test_wer": s.test_wer - p.test_wer,
                            "test_cer": s.test_cer - p.test_cer}
    return out


def table_markdown(rows: list[Row], labeled_minutes: float) -> str:
    lines = ["| model | decoder | dev WER | test WER | test CER | LM weight / word score | "
             "paper: LibriSpeech test clean / other WER |",
             "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        lm = "-" if r.lm_weight is None else f"{r.lm_weight:.2f} / {r.word_score:.2f}"
        lines.append(f"| {r.model} | {r.decoder} | {_fmt(r.dev_wer)} | {_fmt(r.test_wer)} | "
                     f"{_fmt(r.test_cer)} | {lm} | {r.paper(labeled_minutes)} |")
    for decoder, d in improvements(rows).items():
        lines.append(f"| **improvement** (scratch - pretrained) | {decoder} | {_fmt(d['dev_wer'], sign=True)} | "
                     f"**{_fmt(d['test_wer'], sign=True)}** | **{_fmt(d['test_cer'], sign=True)}** | - | - |")
    return "\n".join(lines)


def summary_sentence(rows: list[Row]) -> str:
    """One sentence: what pretraining bought (test WER/CER points, per decoder) and what the
    LM bought (test WER points over Viterbi, per model)."""
    by = {(r.model, r.decoder): r for r in rows}
    parts = [f"{d['test_wer']:+.1f} WER / {d['test_cer']:+.1f} CER points with {decoder}"
             for decoder, d in improvements(rows).items()]
    lm = [f"{by[(m, 'viterbi')].test_wer - r.test_wer:+.1f} WER points for the {m} model"
          for (m, dec), r in by.items() if dec != "viterbi" and (m, "viterbi") in by]
    lm_name = next((dec for (_m, dec) in by if dec != "viterbi"), "LM")
    return (f"On test, pretraining bought {' and '.join(parts) or 'nothing measurable'} "
            f"(scratch minus pretrained), and the {lm_name} LM bought {' and '.join(lm) or 'nothing measurable'} "
            f"over Viterbi.")


def write_results(folder: Path, rows: list[Row], labeled_minutes: float, context: dict,
                  commands: list[str], summary: str = "") -> tuple[Path, Path]:
    """results.md (table, summary, completed updates, setup, commands) and results.json in
    ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    table = table_markdown(rows, labeled_minutes)
    md = ["# w2v2-plugin demo results", "",
          f"Labeled data: {labeled_minutes:g} min; WER/CER in %. Test = held-out sentences read by "
          "held-out synthetic speakers; LM weight and word score tuned on dev.", "",
          table, "", summary, "", *_updates_lines(context),
          "## Setup", "", "```json", json.dumps(context, indent=1), "```", "",
          "## Commands (as run)", "", "```", *commands, "```", ""]
    md_path, json_path = folder / "results.md", folder / "results.json"
    write_text_atomic(md_path, "\n".join(md))
    write_text_atomic(json_path, json.dumps({"labeled_minutes": labeled_minutes, "rows": [asdict(r) for r in rows],
                                   "improvement": improvements(rows), "summary": summary,
                                   "context": context, "commands": commands}, indent=1) + "\n")
    return md_path, json_path


def _updates_lines(context: dict) -> list[str]:
    """Markdown lines: each training's completed / planned updates (none recorded: nothing)."""
    updates = context.get("updates") or {}
    if not updates:
        return []
    return ["Updates completed: " + ", ".join(f"{k} {v['completed']} / {v['planned']}"
                                              for k, v in updates.items()) + ".", ""]


def plot_curves(path: Path, pretrain: Curves, finetune: dict[str, Curves]) -> Path | None:
    """2 x 2 panels: pretraining contrastive accuracy, code perplexity; fine-tuning train loss,
    dev WER (one line per fine-tuned model). Returns None if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib not installed (pip install matplotlib, the `plot` extra): no curves PNG")
        return None
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    (a_acc, a_ppl), (a_loss, a_wer) = axes
    x, y = pretrain.series("train_inner", "accuracy")
    a_acc.plot(x, y, color="tab:blue", marker=".")
    a_acc.set(title="pretraining: contrastive accuracy", xlabel="update", ylabel="accuracy")
    for key, color in (("code_perplexity", "tab:orange"), ("prob_perplexity", "tab:green")):
        x, y = pretrain.series("train_inner", key)
        a_ppl.plot(x, y, label=key, color=color, marker=".")
    a_ppl.set(title="pretraining: codebook perplexity", xlabel="update", ylabel="perplexity")
    a_ppl.legend()
    for name, curves in finetune.items():
        x, y = curves.series("train_inner", "loss")
        a_loss.plot(x, y, label=name, marker=".")
        x, y = curves.series("valid", "valid_wer")
        a_wer.plot(x, y, marker="o", label=name)
    a_loss.set(title="fine-tuning: CTC loss (train)", xlabel="update", ylabel="loss (bits)")
    a_wer.set(title="fine-tuning: dev WER (Viterbi)", xlabel="update", ylabel="WER %")
    a_loss.legend()
    a_wer.legend()
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")  # the temporary name has no .png to infer it from
    plt.close(fig)
    return path
