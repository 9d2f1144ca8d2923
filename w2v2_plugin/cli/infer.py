"""``w2v2-infer``: transcribe a manifest split or audio files with a fine-tuned CTC model.

    w2v2-infer manifests/ls --subset test-clean --path ckpt.pt --decoder viterbi --results-path out/
    w2v2-infer manifests/ls --subset test-clean --path ckpt.pt --save-emissions em/ \\
        --decoder kenlm --lm lm/4gram.bin --lexicon lm/lexicon.txt --beam 500 --results-path out/
    w2v2-infer --emissions em/ --decoder kenlm --lm ... --lexicon ... --lm-weight 1.5   # no model run
    w2v2-infer manifests/ls --subset dev-clean --path ckpt.pt --decoder kenlm ... --tune --results-path out/
    w2v2-infer recordings/ --path ckpt.pt                                              # plain audio

Bad input is one ``w2v2-infer: error: ...`` line and exit status 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import fields

from ..decoding.decoders import DECODER_TYPES, DecoderConfig
from ..decoding.errors import DecodingError
from ..inference.emissions import ChunkConfig
from ..inference.parallel import default_workers
from ..inference.tune import TuneConfig, read_tuned

DECODER_FLAGS = ("lm", "lexicon", "beam", "beam_size_token", "beam_threshold", "lm_weight", "word_score",
                 "unk_weight", "sil_weight", "nbest")


def _help(cls: type, name: str) -> str:
    f = next(f for f in fields(cls) if f.name == name)
    default = f.default if f.default is not f.default_factory else None
    text = f.metadata.get("help", "")
    return text if "default" in text else f"{text} (default: {default})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="w2v2-infer", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", help="manifest directory (with --subset), or audio files / folders")
    p.add_argument("--subset", help="split of the manifest directory: reads SUBSET.tsv and SUBSET.wrd/.ltr")
    p.add_argument("--path", help="fine-tuned CTC checkpoint (plugin w2v2_ctc, or fairseq wav2vec_ctc)")
    p.add_argument("--dict", help="unit dictionary (dict.ltr.txt), only if the checkpoint carries none")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load --path with torch.load(weights_only=False) even if its pickle needs classes beyond "
                        "the plain data of fairseq checkpoints: this can run code from the file, use it only "
                        "for files you trust")
    p.add_argument("--results-path", help="write hypos.SUBSET.jsonl and summary.SUBSET.json here")
    p.add_argument("--save-emissions", metavar="DIR", help="keep the model's emissions here for re-decoding")
    p.add_argument("--emissions", metavar="DIR", help="decode emissions saved by --save-emissions (no model run)")
    g = p.add_argument_group("decoder")
    g.add_argument("--decoder", choices=DECODER_TYPES, default="viterbi", help=_help(DecoderConfig, "type"))
    g.add_argument("--lm", help=_help(DecoderConfig, "lm"))
    g.add_argument("--lexicon", help=_help(DecoderConfig, "lexicon"))
    for name, typ in (("beam", int), ("beam_size_token", int), ("beam_threshold", float), ("lm_weight", float),
                      ("word_score", float), ("unk_weight", float), ("sil_weight", float), ("nbest", int)):
        g.add_argument("--" + name.replace("_", "-"), type=typ, default=None, help=_help(DecoderConfig, name))
    g.add_argument("--decoder-params", metavar="JSON", help="lm_weight and word_score from a --tune result "
                                                            "(explicit --lm-weight/--word-score win)")
    r = p.add_argument_group("running")
    r.add_argument("--workers", type=int, default=default_workers(), help="decoding processes (default: CPUs)")
    r.add_argument("--max-tokens", type=int, default=1_600_000, help="audio samples per model batch")
    r.add_argument("--device", default="auto", help="acoustic model device: auto (cuda if available) | cpu | cuda")
    r.add_argument("--chunk-seconds", type=float, default=ChunkConfig.chunk_seconds,
                   help=_help(ChunkConfig, "chunk_seconds"))
    r.add_argument("--context-seconds", type=float, default=ChunkConfig.context_seconds,
                   help=_help(ChunkConfig, "context_seconds"))
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    t = p.add_argument_group("tuning (--tune: search lm_weight and word_score on this split, then decode it)")
    t.add_argument("--tune", action="store_true", help="run the search; writes RESULTS_PATH/tuned.json")
    t.add_argument("--tune-trials", type=int, default=TuneConfig.trials, help=_help(TuneConfig, "trials"))
    t.add_argument("--tune-method", choices=("bayes", "random"), default=TuneConfig.method,
                   help=_help(TuneConfig, "method"))
    t.add_argument("--tune-seed", type=int, default=TuneConfig.seed, help=_help(TuneConfig, "seed"))
    t.add_argument("--lm-weight-range", type=float, nargs=2, default=(0.0, 5.0), metavar=("LO", "HI"))
    t.add_argument("--word-score-range", type=float, nargs=2, default=(-5.0, 5.0), metavar=("LO", "HI"))
    return p


def config_from_args(args: argparse.Namespace):
    from ..inference.pipeline import InferConfig

    dec: dict = {"type": args.decoder}
    if args.decoder_params:
        dec.update(read_tuned(args.decoder_params))
    for name in DECODER_FLAGS:
        value = getattr(args, name)
        if value is not None:
            dec[name] = value
    if args.decoder == "viterbi" and (args.lm or args.lexicon):
        raise DecodingError("--lm/--lexicon given with --decoder viterbi (which uses no LM); "
                            "add --decoder kenlm (or lexfree)")
    data = inputs = None
    if args.subset:
        if len(args.inputs) != 1:
            raise DecodingError("--subset needs exactly one manifest directory as input")
        data = args.inputs[0]
    elif args.inputs:
        inputs = list(args.inputs)
    tune = None
    if args.tune:
        tune = TuneConfig(trials=args.tune_trials, method=args.tune_method, seed=args.tune_seed,
                          lm_weight=tuple(args.lm_weight_range), word_score=tuple(args.word_score_range))
    return InferConfig(data=data, subset=args.subset or "test", inputs=inputs or (), path=args.path,
                       dict=args.dict, trust_checkpoint=args.trust_checkpoint, emissions=args.emissions,
                       save_emissions=args.save_emissions, results_path=args.results_path,
                       decoder=DecoderConfig(**dec), workers=max(1, args.workers), max_tokens=args.max_tokens,
                       device=args.device, chunk=ChunkConfig(args.chunk_seconds, args.context_seconds),
                       tune=tune, progress=not args.quiet)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        from ..inference.pipeline import run

        summary = run(config_from_args(args))
    except DecodingError as e:
        print(f"w2v2-infer: error: {e}", file=sys.stderr)
        return 2
    if summary.hypos_path:
        print(f"wrote {summary.hypos_path} and {summary.summary_path}")
    elif summary.utterances <= 20:  # no results dir: show the transcripts themselves
        for utt_id, hyps in zip(summary.ids, summary.hypotheses, strict=False):
            print(f"{utt_id}\t{hyps[0].text}")
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
