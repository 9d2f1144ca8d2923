"""``w2v2-manifest`` / ``python -m w2v2_manifests``: manifests and labels, or subword units.

    w2v2-manifest ROOT --dest DIR [options]        manifests + letter labels (default form)
    w2v2-manifest lhotse --recordings R.jsonl.gz [--supervisions S.jsonl.gz] --dest DIR [options]
    w2v2-manifest lhotse --cuts C.jsonl.gz --dest DIR [options]
    w2v2-manifest spm --train DIR/train.wrd --vocab-size N [options]

Bad input ends with ``error: <one line naming the file (and line)>`` on stderr and exit
status 2, never a traceback. A root directory literally named "spm" or "lhotse" is given as
./spm or ./lhotse.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

from .builder import build
from .config import LhotseConfig, ManifestConfig, SpmConfig
from .errors import ManifestError
from .lhotse_input import build_lhotse
from .spm import train_spm

T = TypeVar("T")

_EPILOG = """\
outputs (DEST): {split}.tsv (line 1: absolute root; then path<TAB>frames), {split}.wrd
(words), {split}.ltr (letters, '|' after each word), dict.ltr.txt (from 'train'),
{split}.skipped.tsv (with --on-bad skip). Subword units: w2v2-manifest spm --help.
lhotse manifests instead of a folder: w2v2-manifest lhotse --help.
Formats and normalization rules: manifests/README.md."""

_LHOTSE_EPILOG = """\
outputs (DEST): as for a folder (w2v2-manifest --help); each supervision is one utterance.
A supervision that is the whole of a mono audio file is listed in place; any other (part of a
recording, one channel of several, a format soundfile cannot read, lhotse transforms) is
decoded by lhotse into DEST/segments/SPLIT/REC/UTT.flac (16-bit, mono). Audio sources of type
'command' and 'url' are refused. Details: manifests/README.md."""


def _parser_for(cls: type[T], prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser whose flags are the dataclass fields (help from their metadata)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # reason: cls is a dataclass type (callers pass the config classes)
        meta = f.metadata
        required = f.default is dataclasses.MISSING
        default = None if required else f.default
        kwargs: dict[str, Any] = {"help": meta.get("help", "")}
        if default is not None and not isinstance(default, bool) and "default" not in kwargs["help"]:
            kwargs["help"] += f" (default: {default})"
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if meta.get("positional"):
            parser.add_argument(f.name, metavar=f.name.upper(), **kwargs)
            continue
        if "negate" in meta:  # a default-on switch: --no-progress
            parser.add_argument("--" + meta["negate"].replace("_", "-"), dest=f.name,
                                action="store_false", help="do not " + kwargs["help"])
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, action="store_true", **kwargs)
            continue
        # Field types are strings under postponed annotations: infer from the default.
        kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
        parser.add_argument(flag, dest=f.name, type=kind, default=default, required=required,
                            metavar=meta.get("metavar", f.name.upper()) if "choices" not in meta else None,
                            **kwargs)
    return parser


def build_parser() -> argparse.ArgumentParser:
    return _parser_for(ManifestConfig, "w2v2-manifest",
                       "Index a folder of audio into fairseq manifests (.tsv) and letter labels\n"
                       "(.wrd/.ltr/dict.ltr.txt), checking every file's header.", _EPILOG)


def spm_parser() -> argparse.ArgumentParser:
    return _parser_for(SpmConfig, "w2v2-manifest spm",
                       "Train a sentencepiece model on a split's words and write {split}.spm\n"
                       "labels and dict.spm.txt for every split.")


def lhotse_parser() -> argparse.ArgumentParser:
    return _parser_for(LhotseConfig, "w2v2-manifest lhotse",
                       "Write fairseq manifests (.tsv) and letter labels (.wrd/.ltr/dict.ltr.txt)\n"
                       "from lhotse manifests: a RecordingSet and its SupervisionSet, or a CutSet.",
                       _LHOTSE_EPILOG)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["spm"]:
            spm_cfg = SpmConfig(**vars(spm_parser().parse_args(args[1:])))
            print(train_spm(spm_cfg).line())
        elif args[:1] == ["lhotse"]:
            lhotse_cfg = LhotseConfig(**vars(lhotse_parser().parse_args(args[1:])))
            print(build_lhotse(lhotse_cfg).line())
        else:
            cfg = ManifestConfig(**vars(build_parser().parse_args(args)))
            print(build(cfg).line())
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # writing DEST: permissions, a full disk, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no output was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
