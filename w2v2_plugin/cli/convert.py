"""``w2v2-convert IN.pt OUT.pt``: fairseq 0.12 wav2vec 2.0 checkpoints -> plugin checkpoints.

The output loads with ``fairseq.checkpoint_utils.load_model_ensemble_and_task([OUT],
arg_overrides={"user_dir": <path to w2v2_plugin>})`` and with torch's default
``weights_only=True``: it holds plain data only. The input is loaded with
``weights_only=False`` because fairseq pickles objects into its files: convert only files
you trust.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional

from ..conversion import (
    CheckpointError,
    checkpoint_model_cfg,
    convert_wav2vec2_checkpoint,
    load_checkpoint_file,
    save_checkpoint_atomic,
)

# model name found in the input checkpoint -> converter returning the output checkpoint dict
Converter = Callable[[Mapping[str, Any], argparse.Namespace], Dict[str, Any]]


def _convert_pretraining(state: Mapping[str, Any], args: argparse.Namespace) -> Dict[str, Any]:
    return convert_wav2vec2_checkpoint(state)


CONVERTERS: Dict[str, Converter] = {
    "wav2vec2": _convert_pretraining,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="w2v2-convert",
        description="Convert a fairseq 0.12 wav2vec2 checkpoint (hydra 'cfg' or legacy 'args', e.g. the "
                    "published wav2vec_small.pt) into a checkpoint of the plugin's w2v2 model.")
    p.add_argument("input", help="fairseq checkpoint (.pt)")
    p.add_argument("output", help="where to write the plugin checkpoint (.pt); written atomically")
    return p


def detect_model(state: Mapping[str, Any]) -> str:
    name = checkpoint_model_cfg(state).get("_name")
    return str(name) if name is not None else "wav2vec2"


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        state = load_checkpoint_file(args.input)
        name = detect_model(state)
        if name not in CONVERTERS:
            raise CheckpointError(f"{args.input}: model {name!r} cannot be converted "
                                  f"(supported: {', '.join(sorted(CONVERTERS))})")
        out = CONVERTERS[name](state, args)
        save_checkpoint_atomic(out, args.output)
    except (CheckpointError, KeyError, ValueError, OSError) as e:
        print(f"w2v2-convert: error: {e}", file=sys.stderr)
        return 2
    n_params = sum(v.numel() for v in out["model"].values())
    print(f"w2v2-convert: {args.input} ({name}) -> {args.output} "
          f"[{out['cfg']['model']['_name']}, {len(out['model'])} tensors, {n_params / 1e6:.2f}M parameters]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
