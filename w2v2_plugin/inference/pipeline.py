"""``w2v2-infer``'s work: emissions (computed once, cached), parallel decoding, scoring, outputs."""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from tqdm import tqdm

from w2v2_common.fileio import write_text_atomic

from ..decoding.decoders import DecoderConfig, Hypothesis, build_decoder
from ..decoding.errors import DecodingError
from ..decoding.metrics import ErrorCounts, count_errors, rates, total
from .cache import EmissionCache, jsonable
from .emissions import AcousticModel, ChunkConfig, load_acoustic_model, plan_batches
from .inputs import Utterance, from_manifest, from_paths, ids_unique, read_audio
from .parallel import decode_many, default_workers
from .tune import Trial, TuneConfig, curve, search, write_tuned

logger = logging.getLogger(__name__)


@dataclass
class InferConfig:
    """Everything one ``w2v2-infer`` run needs (the CLI fills it)."""

    data: str | None = field(default=None, metadata={"help": "manifest directory ({subset}.tsv + .wrd/.ltr)"})
    subset: str = field(default="test", metadata={"help": "split of the manifest directory"})
    inputs: Sequence[str] = field(default=(), metadata={"help": "audio files or folders (instead of a manifest)"})
    path: str | None = field(default=None, metadata={"help": "fine-tuned CTC checkpoint"})
    dict: str | None = field(default=None, metadata={"help": "unit dictionary, if the checkpoint has none"})
    trust_checkpoint: bool = field(default=False, metadata={"help": "load the checkpoint even if its pickle "
                                                                    "needs more than plain data (can run code)"})
    emissions: str | None = field(default=None, metadata={"help": "decode these cached emissions (no model run)"})
    save_emissions: str | None = field(default=None, metadata={"help": "keep the emissions in this directory"})
    results_path: str | None = field(default=None, metadata={"help": "directory for hypotheses + summary"})
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    workers: int = field(default_factory=default_workers, metadata={"help": "decoding processes"})
    max_tokens: int = field(default=1_600_000, metadata={"help": "audio samples per model batch"})
    device: str = field(default="auto", metadata={"help": "auto (cuda if available) | cpu | cuda[:N]"})
    chunk: ChunkConfig = field(default_factory=ChunkConfig)
    tune: TuneConfig | None = field(default=None, metadata={"help": "search lm_weight/word_score first"})
    progress: bool = True


class InferSummary(NamedTuple):
    utterances: int
    audio_hours: float
    wer: float
    cer: float
    errors: ErrorCounts
    emission_seconds: float
    decode_seconds: float
    rtf: float
    hypos_path: Path | None
    summary_path: Path | None
    tuned_path: Path | None
    ids: list[str]
    hypotheses: list[list[Hypothesis]]

    def line(self) -> str:
        score = (f"WER {self.wer:.2f}% CER {self.cer:.2f}% ({self.errors.word_errors}/{self.errors.words} words)"
                 if self.errors.words else "no references")
        return (f"{self.utterances} utterances, {self.audio_hours * 3600:.1f} s of audio: {score}; "
                f"emissions {self.emission_seconds:.1f} s, decoding {self.decode_seconds:.1f} s, RTF {self.rtf:.4f}")


def collect_inputs(cfg: InferConfig) -> list[Utterance]:
    if cfg.data and cfg.inputs:
        raise DecodingError("give either a manifest directory (with --subset) or audio files/folders, not both")
    if cfg.data:
        utts = from_manifest(cfg.data, cfg.subset)
    elif cfg.inputs:
        utts = from_paths(cfg.inputs)
    else:
        raise DecodingError("nothing to transcribe: give a manifest directory (and --subset), audio files or "
                            "folders, or --emissions DIR")
    ids_unique(utts)
    return utts


def input_name(cfg: InferConfig) -> str:
    """The name of what is transcribed, for output file names: the manifest split, or ``inputs``."""
    return cfg.subset if cfg.data else "inputs"


def split_name(cfg: InferConfig, cache: EmissionCache) -> str:
    """Outputs are named after the split; decoding cached emissions, the split the cache
    recorded (``emissions`` for caches written before it was recorded)."""
    if cfg.emissions:
        name = str(cache.meta.get("split") or "")
        return name if name and "/" not in name and "\\" not in name and name not in (".", "..") else "emissions"
    return input_name(cfg)


def load_model(cfg: InferConfig) -> AcousticModel:
    if not cfg.path:
        raise DecodingError("--path CHECKPOINT is required to compute emissions (or decode cached ones with "
                            "--emissions DIR)")
    return load_acoustic_model(cfg.path, data_dir=cfg.data, dict_path=cfg.dict, device=cfg.device,
                               trust=cfg.trust_checkpoint)


def compute_emissions(cfg: InferConfig, model: AcousticModel, utts: list[Utterance], cache_dir: Path
                      ) -> tuple[EmissionCache, float]:
    """Run the acoustic model once over ``utts`` (batched by length, long ones chunked)."""
    if cfg.path is None:  # a bug: run() computes emissions only with a checkpoint
        raise AssertionError("compute_emissions needs cfg.path")
    cache = EmissionCache.create(cache_dir, model.units, model.frame_seconds,
                                 checkpoint=str(Path(cfg.path).resolve()), sample_rate=model.sample_rate,
                                 split=input_name(cfg))
    c, k = model.window(cfg.chunk)
    long_limit = c + 2 * k
    lengths = [u.n_samples for u in utts]
    short = [i for i, n in enumerate(lengths) if n <= long_limit]
    long = [i for i, n in enumerate(lengths) if n > long_limit]
    sr = model.sample_rate
    t0 = time.perf_counter()
    bar = tqdm(total=round(sum(lengths) / sr, 1), unit=" s audio", desc="emissions", disable=not cfg.progress,
               mininterval=1.0)
    with bar:
        for batch in plan_batches([lengths[i] for i in short], cfg.max_tokens, 64 if model.batchable else 1):
            idx = [short[j] for j in batch]
            wavs = [model.prepare(read_audio(utts[i], sr)) for i in idx]
            for i, wav, em in zip(idx, wavs, model.forward_batch(wavs), strict=False):
                cache.add(i, utts[i].id, utts[i].ref, len(wav) / sr, em)
                bar.update(round(len(wav) / sr, 1))
        def advance(seconds: float) -> None:
            bar.update(round(seconds, 1))

        for i in long:
            wav = model.prepare(read_audio(utts[i], sr))
            em = model.chunked_emissions(wav, cfg.chunk, cfg.max_tokens, on_progress=advance)
            cache.add(i, utts[i].id, utts[i].ref, len(wav) / sr, em)
    cache.finish()
    return cache, time.perf_counter() - t0


def _decode(cache: EmissionCache, dcfg: DecoderConfig, workers: int, progress: bool, desc: str
            ) -> tuple[list[list[Hypothesis]], float]:
    t0 = time.perf_counter()
    with tqdm(total=len(cache.entries), unit=" utt", desc=desc, disable=not progress, mininterval=1.0) as bar:
        def done(_i: int) -> None:
            bar.update(1)

        hyps = decode_many([cache.path(i) for i in range(len(cache.entries))], dcfg, cache.units, workers,
                           on_done=done)
    return hyps, time.perf_counter() - t0


def _score(cache: EmissionCache, hyps: list[list[Hypothesis]]) -> ErrorCounts:
    return total(count_errors(h[0].text, e.ref) for e, h in zip(cache.entries, hyps, strict=False) if e.ref is not None)


def run_tune(cache: EmissionCache, cfg: InferConfig, out_dir: Path | None) -> tuple[DecoderConfig, Path | None]:
    """Search lm_weight/word_score on the cached split; returns the decoder config with the best pair."""
    if cfg.tune is None:  # a bug: run() tunes only with a TuneConfig
        raise AssertionError("run_tune needs cfg.tune")
    if cfg.decoder.type == "viterbi":
        raise DecodingError("--tune searches LM weights: use it with --decoder kenlm or lexfree (with --lm)")
    if not any(e.ref is not None for e in cache.entries):
        raise DecodingError("--tune needs references (a manifest split with .wrd or .ltr transcripts)")
    base = replace(cfg.decoder, nbest=1)

    def evaluate(lm_weight: float, word_score: float) -> float:
        hyps, _ = _decode(cache, replace(base, lm_weight=lm_weight, word_score=word_score), cfg.workers,
                          progress=False, desc="tune")
        return rates(_score(cache, hyps))[0]

    bar = tqdm(total=cfg.tune.trials, desc="tune", unit=" trial", disable=not cfg.progress)

    def trial_done(t: Trial) -> None:
        bar.update(1)
        bar.set_postfix(wer=f"{t.wer:.2f}")

    with bar:
        result = search(evaluate, cfg.tune, on_trial=trial_done)
    print("WER by (lm_weight, word_score), best first:\n" + curve(result.trials))
    print(f"best: lm_weight {result.best.lm_weight} word_score {result.best.word_score} "
          f"-> dev WER {result.best.wer:.2f}% ({len(result.trials)} trials, {cfg.tune.method}, seed {cfg.tune.seed})")
    tuned_path = None
    if out_dir is not None:
        tuned_path = out_dir / "tuned.json"
        write_tuned(tuned_path, result, base, cfg.tune, dev=f"{cfg.data or cfg.emissions}:{split_name(cfg, cache)}")
        print(f"wrote {tuned_path} (use it with --decoder-params {tuned_path})")
    return replace(cfg.decoder, lm_weight=result.best.lm_weight, word_score=result.best.word_score), tuned_path


def _records(cache: EmissionCache, hyps: list[list[Hypothesis]]) -> list[dict[str, Any]]:
    out = []
    fs = cache.frame_seconds
    for e, nb in zip(cache.entries, hyps, strict=False):
        best = nb[0]
        rec: dict[str, Any] = {"id": e.id, "hyp": best.text, "ref": e.ref, "seconds": round(e.seconds, 3)}
        if e.ref is not None:
            c = count_errors(best.text, e.ref)
            rec.update(word_errors=c.word_errors, ref_words=c.words, char_errors=c.char_errors, ref_chars=c.chars)
        rec["nbest"] = [{"hyp": h.text, "score": round(h.score, 4), "am_score": round(h.am_score, 4),
                         "lm_score": round(h.lm_score, 4)} for h in nb]
        rec["words"] = [{"word": w.word, "start": w.seconds(fs)[0], "end": w.seconds(fs)[1]} for w in best.words]
        out.append(rec)
    return out


def run(cfg: InferConfig) -> InferSummary:
    """Compute (or load) emissions, optionally tune, decode, score, write outputs."""
    out_dir = Path(cfg.results_path) if cfg.results_path else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    tmp_dir: str | None = None
    emission_seconds = 0.0
    try:
        if cfg.emissions:
            cache = EmissionCache.open(cfg.emissions)
        else:
            utts = collect_inputs(cfg)
            model = load_model(cfg)
            # every lexicon/LM/unit check now, before the (possibly long) acoustic model run
            build_decoder(cfg.decoder, model.units)
            if cfg.save_emissions:
                cache_dir = Path(cfg.save_emissions)
            else:
                tmp_dir = tempfile.mkdtemp(prefix=".w2v2_emissions_", dir=out_dir)
                cache_dir = Path(tmp_dir)
            cache, emission_seconds = compute_emissions(cfg, model, utts, cache_dir)
            del model
        dcfg, tuned_path = cfg.decoder, None
        if cfg.tune is not None:
            dcfg, tuned_path = run_tune(cache, cfg, out_dir)
        hyps, decode_seconds = _decode(cache, dcfg, cfg.workers, cfg.progress, desc=f"decode ({dcfg.type})")
    finally:
        if tmp_dir:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    errors = _score(cache, hyps)
    wer, cer = rates(errors)
    audio_seconds = sum(e.seconds for e in cache.entries)
    rtf = (emission_seconds + decode_seconds) / audio_seconds if audio_seconds else float("nan")
    hypos_path = summary_path = None
    name = split_name(cfg, cache)
    if out_dir is not None:
        hypos_path = out_dir / f"hypos.{name}.jsonl"
        write_text_atomic(hypos_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _records(cache, hyps)))
        summary_path = out_dir / f"summary.{name}.json"
        summary = {"utterances": len(cache.entries), "audio_hours": round(audio_seconds / 3600, 6),
                   "wer": None if errors.words == 0 else round(wer, 3),
                   "cer": None if errors.chars == 0 else round(cer, 3), **errors._asdict(),
                   "emission_seconds": round(emission_seconds, 3), "decode_seconds": round(decode_seconds, 3),
                   "rtf": round(rtf, 5),
                   "decode_rtf": round(decode_seconds / audio_seconds, 5) if audio_seconds else None,
                   "workers": cfg.workers, "decoder": asdict(dcfg), "checkpoint": cfg.path,
                   "emissions": cfg.emissions or cfg.save_emissions, "tuned": str(tuned_path) if tuned_path else None}
        write_text_atomic(summary_path, json.dumps(jsonable(summary), indent=2, default=str))
    return InferSummary(len(cache.entries), audio_seconds / 3600, wer, cer, errors, emission_seconds, decode_seconds,
                        rtf, hypos_path, summary_path, tuned_path, [e.id for e in cache.entries], hyps)
