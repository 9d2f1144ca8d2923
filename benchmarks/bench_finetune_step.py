"""CTC fine-tuning step (forward, backward, optimizer step): plugin ``w2v2_ctc`` vs fairseq's ``wav2vec_ctc``.

Both start from the same fairseq ``wav2vec2`` pretraining checkpoint (written to a temp dir)
and carry the same CTC head; the fine-tuning settings are the shipped base_10h recipe
(time masking p=0.65, channel masking p=0.5 x 64, frozen feature encoder, activation dropout
0.1) with LayerDrop 0 for equal work and the transformer unfrozen. Loss: CTC (sum,
zero_infinity) on the same random letter targets; optimizer: fairseq's Adam.
Each model draws its own SpecAugment masks (same amount of work, different positions).

    python benchmarks/bench_finetune_step.py --arch base --batch 2 --seconds 4
    python benchmarks/bench_finetune_step.py --device cuda --dtype bf16
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from common import (
    TrainPrecision,
    base_parser,
    batch_audio,
    build_ctc_pair,
    build_fairseq_ctc,
    build_plugin_ctc,
    child_memory,
    finetune_overrides,
    machine_info,
    measure_memory_children,
    memory_ratio,
    print_report,
    save_fairseq_pretrained,
    setup,
    summarize,
    time_alternating,
    time_ratios,
)

MODELS = ("fairseq wav2vec_ctc", "plugin w2v2_ctc")


def make_targets(batch: int, seconds: float, seed: int, device: torch.device):
    """Random letter transcripts of ~15 characters per second (indices 4.. of the dictionary)."""
    g = torch.Generator().manual_seed(seed + 1)
    length = max(1, int(15 * seconds))
    targets = torch.randint(4, 32, (batch, length), generator=g)
    return targets.to(device), torch.full((batch,), length, dtype=torch.long, device=device)


def make_step(model: torch.nn.Module, audio: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor,
              device: torch.device, dtype_name: str, cast_weights: bool = False) -> Callable[[], float]:
    """One training step; ``cast_weights`` = fairseq's own reduced precision (see TrainPrecision)."""
    precision = TrainPrecision(model, device, dtype_name, cast_weights)
    source = precision.inputs(audio)

    def step() -> float:
        precision.optimizer.zero_grad(set_to_none=True)
        with precision.context():
            net_output = model(source=source, padding_mask=None)
            lprobs = model.get_normalized_probs(net_output, log_probs=True)  # (T, B, V) fp32
        input_lengths = torch.full((audio.size(0),), lprobs.size(0), dtype=torch.long, device=device)
        loss = F.ctc_loss(lprobs, targets, input_lengths, target_lengths, blank=0, reduction="sum",
                          zero_infinity=True)
        precision.backward_and_step(loss)
        return float(loss)

    return step


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--arch", choices=["base", "tiny_cpu", "large"], default="tiny_cpu",
                   help="architecture of the pretrained model")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0)
    args = p.parse_args()
    device = setup(args)
    audio = batch_audio(args.batch, args.seconds, args.seed, device)
    targets, target_lengths = make_targets(args.batch, args.seconds, args.seed, device)

    with tempfile.TemporaryDirectory() as tmp:
        if args.child:
            pretrained = save_fairseq_pretrained(args.arch, args.seed, Path(tmp) / "pretrained.pt")
            build = build_fairseq_ctc if args.child == MODELS[0] else build_plugin_ctc
            model = build(pretrained, finetune_overrides(train=True)).to(device).train()
            dtype = args.dtype if args.child == MODELS[1] else args.peer_dtype
            step = make_step(model, audio, targets, target_lengths, device, dtype,
                             cast_weights=args.child == MODELS[0])
            with child_memory(device):
                for _ in range(args.warmup + 2):
                    step()
            return
        ref, ours = build_ctc_pair(args.arch, args.seed, Path(tmp), train=True)
    ref, ours = ref.to(device).train(), ours.to(device).train()
    steps = {MODELS[0]: make_step(ref, audio, targets, target_lengths, device, args.peer_dtype, cast_weights=True),
             MODELS[1]: make_step(ours, audio, targets, target_lengths, device, args.dtype)}
    times = time_alternating(steps, args.warmup, args.repeats, device)
    memory = {} if args.no_memory else measure_memory_children(MODELS)
    rows = summarize(times, memory=memory)
    nparams = sum(p.numel() for p in ours.parameters())
    notes = [f"pretrained arch {args.arch} ({nparams / 1e6:.1f} M params), batch {args.batch} x {args.seconds:g} s, "
             "base_10h masking, frozen feature encoder, LayerDrop 0 (equal work)",
             f"precision: plugin {args.dtype}{'' if args.dtype == 'fp32' else ' (autocast)'}, fairseq {args.peer_dtype}"
             f"{'' if args.peer_dtype == 'fp32' else ' (weights cast, as its --fp16)'}; "
             f"optimizer fairseq Adam; CTC loss sum; "
             f"warm-up {args.warmup}, {args.repeats} alternating repeats",
             "step MB: peak minus resident memory before the first step (fresh process per model)"]
    label = f"fine-tuning step, fairseq {args.peer_dtype} / plugin {args.dtype}"
    ratios = (time_ratios(label, rows, MODELS[0], MODELS[1])
              + memory_ratio(rows, MODELS[0], MODELS[1]))
    print_report(f"CTC fine-tuning step: {args.arch}, {args.device}", rows, ratios, machine_info(args.device),
                 notes, json_path=args.json, times=times)


if __name__ == "__main__":
    main()
