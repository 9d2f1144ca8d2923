"""Where a pretraining step's time goes: torch.profiler over a few steps of each implementation.

Plugin ``w2v2`` (autocast at ``--dtype``) and fairseq's ``wav2vec2`` (its own reduced
precision at ``--peer-dtype``: weights cast), the same weights, batch and span mask as
``bench_pretrain_step.py``. Prints, per model, the operators with the most self time on the
device (CUDA) or on the CPU, and the number of operator calls per step (nested ones
included). On a GPU, compare the table's total self CUDA time per step with the step's wall
time (from ``bench_pretrain_step.py``): much less device time than wall time means the step
waits on the host launching kernels. Process CPU time does not tell this:
``torch.cuda.synchronize`` spin-waits.

    python benchmarks/profile_pretrain_step.py --device cuda --arch base --dtype bf16 --peer-dtype fp16
    python benchmarks/profile_pretrain_step.py --arch tiny_cpu --batch 2 --seconds 2
"""
from __future__ import annotations

from bench_pretrain_step import make_sample, make_step
from common import base_parser, batch_audio, build_pretrain_pair, setup, sync
from torch.profiler import ProfilerActivity, profile


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--arch", choices=["base", "tiny_cpu", "large"], default="base")
    p.add_argument("--batch", type=int, default=6, help="utterances per batch")
    p.add_argument("--seconds", type=float, default=15.0, help="length of each utterance")
    p.add_argument("--rows", type=int, default=15, help="operators listed per model")
    args = p.parse_args()
    device = setup(args)
    ref, ours = build_pretrain_pair(args.arch, args.seed)
    audio = batch_audio(args.batch, args.seconds, args.seed, device)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    arms = (("plugin w2v2", ours, args.dtype, False), ("fairseq wav2vec2", ref, args.peer_dtype, True))
    for name, model, dtype, cast in arms:
        model = model.to(device)
        step = make_step(model, make_sample(model, audio, args.seed), device, dtype, cast_weights=cast)
        for _ in range(args.warmup):
            step()
        sync(device)
        with profile(activities=activities) as prof:
            for _ in range(args.repeats):
                step()
            sync(device)
        events = prof.key_averages()
        calls = sum(e.count for e in events) / args.repeats
        print(f"\n== {name} ({dtype}), {args.repeats} steps, {calls:.0f} operator calls per step (nested included)")
        print(events.table(sort_by=sort, row_limit=args.rows, max_name_column_width=60))
        model.cpu()


if __name__ == "__main__":
    main()
