"""``w2v2-lm``: build n-gram LMs + lexicons with KenLM, and check them against a model's units.

    w2v2-lm build corpus.txt --order 4 --dict data/dict.ltr.txt --out lm/   # 4gram.arpa/.bin + lexicon.txt
    w2v2-lm build corpus.txt --order 6 --dict data/dict.ltr.txt --unit-lm --out lm/   # for --decoder lexfree
    w2v2-lm check --lm lm/4gram.bin --lexicon lm/lexicon.txt --dict data/dict.ltr.txt

``lmplz``/``build_binary`` come from ``make kenlm``; bad input is one error line, exit status 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import fields

from ..decoding.errors import DecodingError
from ..decoding.lm_files import KENLM_MAX_ORDER
from ..lm.lm_build import LMBuildConfig


def _help(name: str) -> str:
    return next(f.metadata.get("help", "") for f in fields(LMBuildConfig) if f.name == name)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="w2v2-lm", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="corpus -> ARPA + KenLM binary + lexicon")
    b.add_argument("corpus", help=_help("corpus"))
    b.add_argument("--out", required=True, help=_help("out"))
    b.add_argument("--order", type=int, default=4, help=f"n-gram order, 2..{KENLM_MAX_ORDER} (default 4)")
    b.add_argument("--dict", help=_help("dict"))
    b.add_argument("--spm-model", help=_help("spm_model"))
    b.add_argument("--case", choices=("auto", "upper", "lower", "keep"), default="auto", help=_help("case"))
    b.add_argument("--unit-lm", action="store_true", help=_help("unit_lm"))
    b.add_argument("--prune", type=int, nargs="+", default=(), help=_help("prune") + " (e.g. 0 0 1)")
    b.add_argument("--binary-type", choices=("trie", "probing"), default="trie", help=_help("binary_type"))
    b.add_argument("--drop-oov-words", action="store_true", help=_help("drop_oov_words"))
    b.add_argument("--memory", default="20%", help=_help("memory"))
    b.add_argument("--kenlm-bin", help=_help("kenlm_bin") + " (else $KENLM_BIN, tools/kenlm/bin, PATH)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    c = sub.add_parser("check", help="load LM (+ lexicon) with the decoder and report what it sees")
    c.add_argument("--lm", required=True, help="ARPA or KenLM binary")
    c.add_argument("--lexicon", help="lexicon (word LM); leave out for a unit LM")
    c.add_argument("--dict", required=True, help="the model's unit dictionary (dict.ltr.txt) or its directory")
    return p


def _build(args: argparse.Namespace) -> int:
    from ..lm.lm_build import build_lm

    cfg = LMBuildConfig(corpus=args.corpus, out=args.out, order=args.order, dict=args.dict,
                        spm_model=args.spm_model, case=args.case, unit_lm=args.unit_lm, prune=tuple(args.prune),
                        binary_type=args.binary_type, drop_oov_words=args.drop_oov_words, memory=args.memory,
                        kenlm_bin=args.kenlm_bin)
    r = build_lm(cfg, progress=not args.quiet)
    made = [str(r.arpa), str(r.binary)] + ([str(r.lexicon)] if r.lexicon else [])
    print("wrote " + ", ".join(made))
    dropped = f", {r.dropped_words} word types left out of the lexicon (units not in --dict)" if r.dropped_words else ""
    lex = f", lexicon {r.lexicon_words} words" if r.lexicon else ""
    print(f"{args.order}-gram {'unit' if args.unit_lm else 'word'} LM: {r.sentences} sentences, {r.tokens} tokens, "
          f"vocabulary {r.vocab}{lex}{dropped}; {r.seconds:.1f} s")
    return 0


def _check(args: argparse.Namespace) -> int:
    from ..decoding import DecoderConfig, build_decoder
    from ..decoding.lexicon import load_lexicon
    from ..decoding.lm_files import inspect_lm
    from ..decoding.units import resolve_dictionary

    units = resolve_dictionary(args.dict)
    info = inspect_lm(args.lm)
    kind = "kenlm" if args.lexicon else "lexfree"
    build_decoder(DecoderConfig(type=kind, lm=args.lm, lexicon=args.lexicon), units)  # every check, as decoding does
    counts = " ".join(f"{n + 1}-grams={c}" for n, c in enumerate(info.counts))
    extra = ""
    if args.lexicon:
        lex = load_lexicon(args.lexicon, units)
        missing = "" if info.vocab is None else f", {sum(w not in info.vocab for w in lex.entries)} not in the LM"
        extra = f"; lexicon {len(lex)} words{missing}"
    print(f"ok: {args.lm} is a {info.format} {info.order}-gram LM ({counts}); units {units.source} "
          f"({units.kind}, {len(units)} symbols){extra}; usable with --decoder {kind}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _build(args) if args.command == "build" else _check(args)
    except DecodingError as e:
        print(f"w2v2-lm: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
