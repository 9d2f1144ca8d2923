"""The whole wav2vec 2.0 recipe on the embedded corpus, with the plugin's own commands.

    python -m examples.demo.run                      # ~40 min on 2 idle CPU cores
    python -m examples.demo.run --quick              # smoke run, < 5 min
    python -m examples.demo.run --budget-minutes 60 --out /tmp/demo

Steps (each printed as ``+ command`` before it runs, so it can be copied for other data):
synthesize the corpus -> ``w2v2-manifest`` (pretraining audio; labeled train/dev/test) ->
``fairseq-hydra-train`` pretraining (tiny_cpu) -> CTC fine-tuning of the pretrained model AND of
the same architecture from scratch (same labels, updates and schedule) -> ``w2v2-lm build`` a
4-gram on the LM text -> ``w2v2-infer --tune`` the LM weight and word score on dev ->
``w2v2-infer`` on test with Viterbi and with the 4-gram -> results table (printed, and in
``OUT/results/results.{md,json}``) and ``OUT/results/curves.png``; with tensorboard installed
(``make env`` does) every training's curves also go to ``OUT/tensorboard``
(``tensorboard --logdir OUT/tensorboard``).

Budgets are numbers of updates sized for 2 CPU cores (scaled by --budget-minutes); each
training also gets a wall-clock cap (fairseq's ``optimization.stop_time_hours``) so a much
slower machine ends near the budget, with an error: the comparison is at equal updates, and an
arm cut short by its cap stops the run. On a machine with CUDA the same commands run on the GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .logs import completed_updates, read_log
from .report import Row, plot_curves, summary_sentence, table_markdown, write_results
from .steps import StepError, run_step
from .synth import split_name

REPO = Path(__file__).resolve().parents[2]
PRETRAIN_CONFIGS = REPO / "examples" / "wav2vec2" / "config" / "pretraining"
FINETUNE_CONFIGS = REPO / "examples" / "wav2vec2" / "config" / "finetuning"
USER_DIR = REPO / "w2v2_plugin"


@dataclass
class Plan:
    """What one demo run does; the presets below, scaled by --budget-minutes."""

    budget_minutes: float = field(metadata={"help": "intended wall-clock total on 2 idle CPU cores"})
    synth_args: list[str] = field(metadata={"help": "python -m examples.demo.synth size flags"})
    labeled_minutes: float = field(metadata={"help": "labeled fine-tuning data (minutes)"})
    pretrain_updates: int = field(metadata={"help": "pretraining updates"})
    finetune_updates: int = field(metadata={"help": "fine-tuning updates (each model)"})
    pretrain_max_tokens: int = field(default=320000, metadata={
        "help": "pretraining batch in samples (320000: about six utterances of ~2.6 s, cropped "
                "to the shortest of the batch)"})
    pretrain_lr: float = field(default=1e-3, metadata={"help": "pretraining peak learning rate"})
    pretrain_warmup: int = field(default=300, metadata={
        "help": "pretraining warm-up updates (polynomial decay to 0 at the last update)"})
    clip_norm: float = field(default=5.0, metadata={"help": "pretraining gradient-norm clip"})
    finetune_max_tokens: int = field(default=320000, metadata={
        "help": "fine-tuning batch in samples (20 s; the corpus' longest utterance is 5.8 s)"})
    finetune_lr: float = field(default=1e-3, metadata={"help": "fine-tuning peak learning rate (tri-stage)"})
    finetune_freeze_updates: int = field(default=100, metadata={
        "help": "pretrained model: updates that train the output layer alone (scratch: none)"})
    finetune_validate_every: int = field(default=100, metadata={"help": "dev validation interval (updates)"})
    num_workers: int = field(default=1, metadata={"help": "data-loading processes of each training"})
    precision: str = field(default="fp32", metadata={
        "help": "training precision, pinned: the records were measured with it"})
    # Shares of the budget each training may take at most (wall-clock caps, stop_time_hours).
    # A cap only guards a much slower machine: an arm it cuts short stops the run (equal updates
    # or no comparison).
    pretrain_share: float = field(default=0.7, metadata={"help": "cap on pretraining time / budget"})
    finetune_share: float = field(default=0.3, metadata={"help": "cap per fine-tuning / budget"})
    tune_trials: int = field(default=16, metadata={"help": "dev decodings tried by --tune"})
    beam: int = field(default=50, metadata={"help": "4-gram beam (paper: 50 for tuning)"})
    lm_order: int = field(default=4, metadata={"help": "n-gram order"})


# Default on 2 CPU cores, sized to end within 45 min there including set-up (see the README's
# demo section for the probe runs that chose it): 10 minutes of labels (the paper's gain is
# largest there); most of the time on pretraining 3 h of audio at lr 1e-3 (about six utterances
# per batch, clipped gradients); then 800 fine-tuning updates of 20 s batches for each model
# (the plan that paid on the H200), both finishing: equal updates.
DEFAULT = Plan(budget_minutes=45, labeled_minutes=10,
               synth_args=["--unlabeled-hours", "3", "--labeled-minutes", "10",
                           "--dev-minutes", "8", "--test-minutes", "8"],
               pretrain_updates=2600, finetune_updates=800)
# With CUDA: the plan measured on one H200 (6.1 min), where pretraining pays: 1600 updates of
# six 4 s crops at lr 5e-4 (accuracy 0.21), 800 fine-tuning updates of 20 s batches.
DEFAULT_GPU = Plan(budget_minutes=30, labeled_minutes=10, synth_args=list(DEFAULT.synth_args),
                   pretrain_updates=1600, finetune_updates=800, pretrain_max_tokens=384000,
                   pretrain_lr=5e-4, pretrain_warmup=100, clip_norm=0.0, num_workers=0,
                   pretrain_share=0.55, finetune_share=0.2)
QUICK = Plan(budget_minutes=5, labeled_minutes=10,
             synth_args=["--unlabeled-hours", "0.2", "--labeled-minutes", "10",
                         "--dev-minutes", "2", "--test-minutes", "2"],
             pretrain_updates=60, finetune_updates=60, pretrain_share=1.0, finetune_share=1.0,
             num_workers=0, tune_trials=4, beam=20)


def pretrain_overrides(plan: Plan, updates: int | None = None) -> list[str]:
    """The demo's pretraining schedule and batch as fairseq-hydra-train overrides: ``plan``'s run,
    or with ``updates`` its first ``updates`` updates (same warm-up and decay; for benchmarks)."""
    total = plan.pretrain_updates
    return [f"optimization.max_update={total if updates is None else updates}",
            f"optimization.lr=[{plan.pretrain_lr:g}]", f"optimization.clip_norm={plan.clip_norm:g}",
            f"lr_scheduler.warmup_updates={max(1, min(plan.pretrain_warmup, total // 8))}",
            f"++lr_scheduler.total_num_update={total}", f"dataset.max_tokens={plan.pretrain_max_tokens}",
            "dataset.disable_validation=true", f"common.log_interval={max(1, min(10, total // 20))}"]


def scaled(plan: Plan, budget_minutes: float | None, labeled_minutes: float | None) -> Plan:
    """The preset with its update counts scaled to another budget / labeled size."""
    p = Plan(**asdict(plan))
    if budget_minutes is not None and budget_minutes != plan.budget_minutes:
        k = budget_minutes / plan.budget_minutes
        p.budget_minutes = budget_minutes
        p.pretrain_updates = max(10, round(plan.pretrain_updates * k))
        p.finetune_updates = max(10, round(plan.finetune_updates * k))
    if labeled_minutes is not None:
        p.labeled_minutes = labeled_minutes
        i = p.synth_args.index("--labeled-minutes")
        p.synth_args = p.synth_args[:i + 1] + [f"{labeled_minutes:g}"] + p.synth_args[i + 2:]
    return p


def has_cuda() -> bool:
    try:
        import torch
        return bool(torch.cuda.is_available())
    except Exception:  # torch missing or broken: fairseq will say so in its own step
        return False


def _hours(minutes: float) -> str:
    return f"{minutes / 60:.4f}"


class Demo:
    """Runs the steps in order, keeping the printed commands for the report."""

    def __init__(self, plan: Plan, out: Path, seed: int, keep: bool, synth_jobs: int = 2) -> None:
        self.plan, self.out, self.seed, self.keep = plan, out, seed, keep
        self.synth_jobs = synth_jobs
        self.logs = out / "logs"
        self.commands: list[str] = []
        self.timings: dict[str, float] = {}
        self.updates: dict[str, dict[str, int]] = {}  # training step -> planned / completed
        self.device_overrides = [] if not has_cuda() else ["common.cpu=false"]

    def step(self, name: str, argv: list[str], updates: int | None = None,
             keys: tuple[str, ...] = ()) -> None:
        self.commands.append(shlex.join(argv))
        result = run_step(name, argv, self.logs, total_updates=updates, postfix_keys=keys)
        self.timings[name] = round(result.seconds, 1)

    def train(self, name: str, argv: list[str], updates: int, keys: tuple[str, ...]) -> None:
        """A fairseq-hydra-train step that must complete all its updates: the comparison is at
        equal updates, so an arm cut short by its wall-clock cap stops the demo."""
        self.step(name, argv, updates=updates, keys=keys)
        done = completed_updates(self.logs / f"{name}.log")
        self.updates[name] = {"planned": updates, "completed": done}
        if done < updates:
            raise StepError(
                f"{name}: the wall-clock cap (optimization.stop_time_hours) stopped training at "
                f"update {done} of {updates}, so the arms would not be compared at equal updates; "
                f"run on an idle machine or with a larger --budget-minutes (log: {self.logs / name}.log)")

    def _common(self) -> list[str]:
        """Overrides every training shares: the seed, the pinned precision, data workers."""
        if self.plan.precision != "fp32":
            raise StepError(f"plan precision {self.plan.precision!r}: only fp32 is measured for the demo")
        return [f"common.seed={self.seed}", f"++task.precision={self.plan.precision}",
                "common.fp16=false", "++common.bf16=false",
                f"dataset.num_workers={self.plan.num_workers}", *self.device_overrides]

    def _tensorboard(self, name: str) -> list[str]:
        """fairseq's TensorBoard logging, one folder per training under OUT/tensorboard (view all
        side by side: ``tensorboard --logdir OUT/tensorboard``); nothing without tensorboard."""
        try:
            import tensorboard  # noqa: F401  (fairseq writes through torch.utils.tensorboard)
        except ImportError:
            return []
        return [f"common.tensorboard_logdir={self.out / 'tensorboard' / name}"]

    # -- data ---------------------------------------------------------------------------
    def corpus(self) -> Path:
        corpus = self.out / "corpus"
        self.step("synth", ["python", "-m", "examples.demo.synth", "--out", str(corpus),
                            "--seed", str(self.seed), "--jobs", str(self.synth_jobs), *self.plan.synth_args])
        return corpus / "LibriSpeech"

    def manifests(self, libri: Path) -> tuple[Path, Path]:
        pre, lab = self.out / "manifests" / "pretrain", self.out / "manifests" / "labeled"
        self.step("manifest_pretrain", ["w2v2-manifest", str(libri / "train-unlabeled"), "--dest", str(pre),
                                        "--valid-percent", "0", "--labels", "none", "--no-progress"])
        for split, folder in (("train", split_name(self.plan.labeled_minutes)), ("dev", "dev"),
                              ("test", "test")):
            self.step(f"manifest_{split}", ["w2v2-manifest", str(libri / folder), "--dest", str(lab),
                                            "--valid-percent", "0", "--split-name", split, "--no-progress"])
        return pre, lab

    # -- training -----------------------------------------------------------------------
    def _fresh(self, folder: Path) -> Path:
        """A training's save dir; emptied first (fairseq would resume an old run) unless --keep."""
        if folder.exists() and not self.keep:
            shutil.rmtree(folder)
        return folder

    def pretrain(self, manifest: Path) -> Path:
        p = self.plan
        save = self._fresh(self.out / "pretrain")
        updates = p.pretrain_updates
        self.train("pretrain", [
            "fairseq-hydra-train", "--config-dir", str(PRETRAIN_CONFIGS), "--config-name", "tiny_cpu",
            f"task.data={manifest}", f"common.user_dir={USER_DIR}", f"checkpoint.save_dir={save}",
            f"hydra.run.dir={self.out / 'hydra' / 'pretrain'}", *self._tensorboard("pretrain"),
            *pretrain_overrides(p), f"checkpoint.save_interval_updates={max(10, updates // 4)}",
            f"++optimization.stop_time_hours={_hours(p.budget_minutes * p.pretrain_share)}",
            *self._common()], updates=updates, keys=("accuracy", "code_perplexity"))
        return save / "checkpoint_last.pt"

    def finetune(self, manifest: Path, pretrained: Path, name: str, scratch: bool) -> Path:
        p = self.plan
        save = self._fresh(self.out / "finetune" / name)
        updates = p.finetune_updates
        # Each validation decodes all of dev: not too often on CPU.
        every = min(p.finetune_validate_every, max(10, updates // 4))
        # From scratch, a frozen random feature encoder would be a straw man: it trains (full
        # gradient, no frozen phase). Same architecture (read from the pretrained checkpoint's
        # config), labels, updates and schedule; only the starting weights differ.
        mode_args = (["++model.no_pretrained_weights=true", "model.feature_grad_mult=1.0",
                      "model.freeze_finetune_updates=0"] if scratch else
                     [f"model.freeze_finetune_updates={min(p.finetune_freeze_updates, updates // 8)}"])
        self.train(f"finetune_{name}", [
            "fairseq-hydra-train", "--config-dir", str(FINETUNE_CONFIGS), "--config-name", "tiny_cpu",
            f"task.data={manifest}", f"model.w2v_path={pretrained}", f"common.user_dir={USER_DIR}",
            f"checkpoint.save_dir={save}", f"hydra.run.dir={self.out / 'hydra' / name}", *self._tensorboard(name),
            "dataset.valid_subset=dev", f"optimization.max_update={updates}",
            f"optimization.lr=[{p.finetune_lr:g}]", f"dataset.max_tokens={p.finetune_max_tokens}",
            f"dataset.validate_interval_updates={every}", f"checkpoint.save_interval_updates={every}",
            f"common.log_interval={max(1, min(20, updates // 20))}",
            f"++optimization.stop_time_hours={_hours(p.budget_minutes * p.finetune_share)}",
            *mode_args, *self._common()], updates=updates, keys=("loss", "wer"))
        return save / "checkpoint_best.pt"

    # -- LM and decoding ----------------------------------------------------------------
    def lm(self, labeled: Path) -> tuple[Path, Path]:
        lm_dir = self.out / "lm"
        order = self.plan.lm_order
        self.step("lm", ["w2v2-lm", "build", str(self.out / "corpus" / "text" / "lm.txt"), "--order",
                         str(order), "--dict", str(labeled / "dict.ltr.txt"), "--out", str(lm_dir), "--quiet"])
        return lm_dir / f"{order}gram.bin", lm_dir / "lexicon.txt"

    def decode(self, labeled: Path, ckpt: Path, name: str, lm: Path, lexicon: Path,
               dev_viterbi_wer: float | None) -> list[Row]:
        """Tune the LM weight / word score on dev, then decode test with Viterbi and with the
        LM. The model runs once per split; the decoders re-read its saved emissions."""
        d = self.out / "decode" / name
        if d.exists():
            shutil.rmtree(d)
        model = [str(labeled), "--path", str(ckpt)]
        kenlm = ["--decoder", "kenlm", "--lm", str(lm), "--lexicon", str(lexicon), "--beam", str(self.plan.beam)]
        run = ["--quiet", "--workers", str(min(8, os.cpu_count() or 2))]
        self.step(f"tune_{name}_dev", ["w2v2-infer", *model, "--subset", "dev", *kenlm, "--tune", "--tune-trials",
                                       str(self.plan.tune_trials), "--results-path", str(d / "tune"), *run])
        self.step(f"decode_{name}_test_viterbi", ["w2v2-infer", *model, "--subset", "test", "--decoder", "viterbi",
                                                  "--save-emissions", str(d / "emissions_test"),
                                                  "--results-path", str(d / "viterbi"), *run])
        self.step(f"decode_{name}_test_lm", ["w2v2-infer", "--emissions", str(d / "emissions_test"), *kenlm,
                                             "--decoder-params", str(d / "tune" / "tuned.json"),
                                             "--results-path", str(d / "kenlm"), *run])
        vit_test = _summary(d / "viterbi" / "summary.test.json")
        lm_test = _summary(d / "kenlm" / "summary.test.json")  # the cache keeps the split name
        tuned = json.loads((d / "tune" / "tuned.json").read_text())
        return [Row(name, "viterbi", vit_test["wer"], vit_test["cer"], dev_viterbi_wer, None, None),
                Row(name, f"{self.plan.lm_order}-gram", lm_test["wer"], lm_test["cer"], tuned["dev_wer"],
                    tuned["lm_weight"], tuned["word_score"])]


def _summary(path: Path) -> dict:
    if not path.exists():
        raise StepError(f"{path}: expected decoding summary missing")
    return json.loads(path.read_text())


def run(plan: Plan, out: Path, seed: int = 0, keep: bool = False, synth_jobs: int = 2) -> list[Row]:
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    demo = Demo(plan, out, seed, keep, synth_jobs)
    device = "cuda" if demo.device_overrides else "cpu"
    print(f"demo: {plan.labeled_minutes:g} min of labels, {plan.pretrain_updates} pretraining + "
          f"2 x {plan.finetune_updates} fine-tuning updates, budget ~{plan.budget_minutes:g} min "
          f"({device}); everything goes to {out}")
    libri = demo.corpus()
    pre_manifest, labeled = demo.manifests(libri)
    pretrained = demo.pretrain(pre_manifest)
    ckpts = {name: demo.finetune(labeled, pretrained, name, scratch=name == "scratch")
             for name in ("scratch", "pretrained")}
    lm, lexicon = demo.lm(labeled)
    ft_curves = {name: read_log(demo.logs / f"finetune_{name}.log") for name in ckpts}
    rows: list[Row] = []
    for name, ckpt in ckpts.items():
        # Dev WER with Viterbi: fairseq's validation of the checkpoint kept (the best one).
        dev_wers = ft_curves[name].series("valid", "valid_wer")[1]
        rows += demo.decode(labeled, ckpt, name, lm, lexicon, min(dev_wers) if dev_wers else None)

    results = out / "results"
    pre_curves = read_log(demo.logs / "pretrain.log")
    png = plot_curves(results / "curves.png", pre_curves, ft_curves)
    total = time.time() - start
    corpus_info = json.loads((out / "corpus" / "corpus.json").read_text())
    context = {"plan": asdict(plan), "seed": seed, "device": device, "total_seconds": round(total, 1),
               "step_seconds": demo.timings, "updates": demo.updates, "corpus": corpus_info["splits"],
               "pretrain_final": {k: pre_curves.last("train_inner", k)
                                  for k in ("accuracy", "code_perplexity", "prob_perplexity", "num_updates")},
               "finetune_final_dev_wer": {n: c.last("valid", "valid_wer") for n, c in ft_curves.items()}}
    summary = summary_sentence(rows)
    md, js = write_results(results, rows, plan.labeled_minutes, context, demo.commands, summary)
    print()
    print(table_markdown(rows, plan.labeled_minutes))
    print()
    print(summary)
    acc = context["pretrain_final"]["accuracy"]
    done = ", ".join(f"{k} {v['completed']}/{v['planned']}" for k, v in demo.updates.items())
    print(f"demo: done in {total / 60:.1f} min; updates completed: {done}; pretraining ended at "
          f"contrastive accuracy {acc if acc is None else round(acc, 3)}; results in {md}, {js}"
          + (f", {png}" if png else "")
          + (f"; curves: tensorboard --logdir {out / 'tensorboard'}" if (out / "tensorboard").exists() else ""))
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m examples.demo.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke-test sizes (< 5 min on 2 cores)")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="scale the training updates to this total (default: 30, quick: 5)")
    p.add_argument("--labeled-minutes", type=float, default=None,
                   help="labeled data for fine-tuning (default 10; 60 = the 1 h setting)")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--seed", type=int, default=0,
                   help="corpus seed and every training's common.seed (default: 0)")
    p.add_argument("--synth-jobs", type=int, default=2, help="processes synthesizing the corpus (default: 2)")
    p.add_argument("--keep", action="store_true",
                   help="keep earlier checkpoints in OUT (fairseq then resumes from them)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    preset = QUICK if args.quick else (DEFAULT_GPU if has_cuda() else DEFAULT)
    plan = scaled(preset, args.budget_minutes, args.labeled_minutes)
    try:
        run(plan, Path(args.out).resolve(), args.seed, args.keep, args.synth_jobs)
    except StepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
