"""``w2v2-convert IN.pt OUT.pt``: fairseq 0.12 wav2vec 2.0 checkpoints -> plugin checkpoints.

- ``wav2vec2`` (pretraining) -> ``w2v2``;
- ``wav2vec_ctc`` (fine-tuned, e.g. the published ``*_960h.pt``) -> ``w2v2_ctc``; legacy
  files hold no dictionary: pass ``--dict dict.ltr.txt``;
- ``--to-hf DIR``: also (or only, without OUT) export a fine-tuned model -- a fairseq
  ``wav2vec_ctc`` or a plugin ``w2v2_ctc`` checkpoint -- as a transformers
  ``Wav2Vec2ForCTC`` directory (needs ``pip install transformers``).

- ``--safetensors``: also write the weights as ``OUT.safetensors`` beside ``OUT.pt``.

The output loads with ``fairseq.checkpoint_utils.load_model_ensemble_and_task([OUT],
arg_overrides={"user_dir": <path to w2v2_plugin>})`` and with torch's default
``weights_only=True``: it holds plain data only. The input is read without running code from
it (:mod:`w2v2_plugin.interop.checkpoint_io`: ``weights_only=True`` admitting only the classes fairseq's
own files pickle); a file that needs more is refused unless ``--trust-checkpoint`` is given.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from ..interop.checkpoint_io import (
    CheckpointError,
    checkpoint_model_cfg,
    load_checkpoint_file,
    safetensors_path,
    save_checkpoint_atomic,
    save_safetensors_atomic,
)
from ..interop.fairseq_ctc import convert_wav2vec_ctc_checkpoint
from ..interop.fairseq_wav2vec2 import convert_wav2vec2_checkpoint
from ..interop.hf_export import export_to_hf

TRUST_OPT_IN = "pass --trust-checkpoint"

# model name found in the input checkpoint -> converter returning the output checkpoint dict
Converter = Callable[[Mapping[str, Any], argparse.Namespace], dict[str, Any]]


def _convert_pretraining(state: Mapping[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    return convert_wav2vec2_checkpoint(state)


def _convert_ctc(state: Mapping[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    return convert_wav2vec_ctc_checkpoint(state, getattr(args, "dict", None))


CONVERTERS: dict[str, Converter] = {
    "wav2vec2": _convert_pretraining,
    "wav2vec_ctc": _convert_ctc,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="w2v2-convert",
        description="Convert a fairseq 0.12 wav2vec2 checkpoint (hydra 'cfg' or legacy 'args', e.g. the "
                    "published wav2vec_small.pt) into a checkpoint of the plugin's w2v2 model.")
    p.add_argument("input", help="fairseq checkpoint (.pt); with --to-hf also a w2v2_ctc checkpoint")
    p.add_argument("output", nargs="?", default=None,
                   help="where to write the plugin checkpoint (.pt); written atomically "
                        "(optional with --to-hf)")
    p.add_argument("--dict", default=None, metavar="DICT",
                   help="target dictionary (dict.ltr.txt) of a legacy wav2vec_ctc checkpoint, "
                        "which does not contain it")
    p.add_argument("--to-hf", default=None, metavar="OUT_DIR",
                   help="export the fine-tuned CTC model as a transformers Wav2Vec2ForCTC directory")
    p.add_argument("--safetensors", action="store_true",
                   help="also write the converted weights as OUTPUT's name with .safetensors (beside the .pt)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load INPUT with torch.load(weights_only=False) even if its pickle needs classes "
                        "beyond the plain data of fairseq checkpoints: this can run code from the file, "
                        "use it only for files you trust")
    return p


def detect_model(state: Mapping[str, Any]) -> str:
    name = checkpoint_model_cfg(state).get("_name")
    return str(name) if name is not None else "wav2vec2"


def _export_hf(args: argparse.Namespace, name: str, out: dict[str, Any] | None) -> str:
    """--to-hf: export a w2v2_ctc checkpoint (the input, or the converted output) to OUT_DIR."""
    if name not in ("wav2vec_ctc", "w2v2_ctc"):
        raise CheckpointError(f"{args.input}: --to-hf exports fine-tuned CTC models; this is a "
                              f"{name!r} checkpoint")
    if out is None:  # already a plugin checkpoint
        res = export_to_hf(args.input, None, args.to_hf, trust=args.trust_checkpoint, opt_in=TRUST_OPT_IN)
    elif args.output:
        res = export_to_hf(args.output, None, args.to_hf)
    else:
        fd, tmp = tempfile.mkstemp(suffix=".pt")
        os.close(fd)
        try:
            save_checkpoint_atomic(out, tmp)
            res = export_to_hf(tmp, None, args.to_hf)
        finally:
            os.unlink(tmp)
    return (f"w2v2-convert: {args.input} -> {res.out_dir} [transformers Wav2Vec2ForCTC, "
            f"{res.layers} layers, vocab {res.vocab_size}, {res.parameters / 1e6:.2f}M parameters]")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.output is None and args.to_hf is None:
        parser.error("give OUTPUT and/or --to-hf OUT_DIR")
    if args.safetensors and args.output is None:
        parser.error("--safetensors writes beside OUTPUT: give OUTPUT")
    try:
        state = load_checkpoint_file(args.input, trust=args.trust_checkpoint, opt_in=TRUST_OPT_IN)
        name = detect_model(state)
        if name == "w2v2_ctc" and args.to_hf and not args.output:
            del state
            print(_export_hf(args, name, None))
            return 0
        if name not in CONVERTERS:
            raise CheckpointError(f"{args.input}: model {name!r} cannot be converted "
                                  f"(supported: {', '.join(sorted(CONVERTERS))})")
        out = CONVERTERS[name](state, args)
        if args.output:
            save_checkpoint_atomic(out, args.output)
            n_params = sum(v.numel() for v in out["model"].values())
            print(f"w2v2-convert: {args.input} ({name}) -> {args.output} "
                  f"[{out['cfg']['model']['_name']}, {len(out['model'])} tensors, "
                  f"{n_params / 1e6:.2f}M parameters]")
            if args.safetensors:
                st_path = safetensors_path(args.output)
                save_safetensors_atomic(out["model"], st_path,
                                        {"format": "pt", "model": out["cfg"]["model"]["_name"],
                                         "checkpoint": os.path.basename(args.output)})
                print(f"w2v2-convert: weights also in {st_path} [safetensors]")
        if args.to_hf:
            print(_export_hf(args, name, out))
    except (CheckpointError, KeyError, ValueError, OSError) as e:
        print(f"w2v2-convert: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
