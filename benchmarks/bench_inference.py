"""Inference throughput (seconds of audio per second): plugin ``w2v2_ctc`` vs fairseq's
``wav2vec_ctc`` vs transformers' ``Wav2Vec2ForCTC`` on exported weights.

All three carry the same weights (fairseq builds the pretrained model and the CTC head; the
plugin converts them; transformers gets the plugin's weights through the HF export) and read
the same audio; eval mode, ``torch.inference_mode``, output = CTC log-probabilities. The
script checks that the three agree (max abs difference of log-probs) before timing.

    python benchmarks/bench_inference.py --arch base --batch 1 --seconds 10
    python benchmarks/bench_inference.py --device cuda --dtype fp16 --batch 8
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from common import (
    autocast,
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
    plugin_ctc_to_hf,
    print_report,
    save_fairseq_pretrained,
    setup,
    summarize,
    time_alternating,
    time_ratios,
)

MODELS = ("fairseq wav2vec_ctc", "transformers Wav2Vec2ForCTC", "plugin w2v2_ctc")


def fairseq_style(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(audio: torch.Tensor) -> torch.Tensor:
        out = model(source=audio, padding_mask=None)
        return model.get_normalized_probs(out, log_probs=True).transpose(0, 1)  # (B, T, V)
    return run


def hf_style(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(audio: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(model(audio).logits.float(), dim=-1)  # (B, T, V)
    return run


def runners(models: dict[str, torch.nn.Module]) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    return {name: (hf_style(m) if name == MODELS[1] else fairseq_style(m)) for name, m in models.items()}


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--arch", choices=["base", "tiny_cpu", "large"], default="tiny_cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    device = setup(args)
    audio = batch_audio(args.batch, args.seconds, args.seed, device)
    overrides = finetune_overrides(train=False)

    with tempfile.TemporaryDirectory() as tmp:
        if args.child:
            pretrained = save_fairseq_pretrained(args.arch, args.seed, Path(tmp) / "pretrained.pt")
            if args.child == MODELS[0]:
                model = build_fairseq_ctc(pretrained, overrides)
            else:
                model = build_plugin_ctc(pretrained, overrides)
                if args.child == MODELS[1]:
                    model = plugin_ctc_to_hf(model, model.w2v_encoder.proj.out_features)
            model = model.to(device).eval()
            run = runners({args.child: model})[args.child]
            dtype = args.dtype if args.child == MODELS[2] else args.peer_dtype
            with child_memory(device), torch.inference_mode(), autocast(device, dtype):
                for _ in range(args.warmup + 2):
                    run(audio)
            return
        ref, ours = build_ctc_pair(args.arch, args.seed, Path(tmp), train=False)
    hf = plugin_ctc_to_hf(ours, ours.w2v_encoder.proj.out_features)
    models = {MODELS[0]: ref, MODELS[1]: hf, MODELS[2]: ours}
    for m in models.values():
        m.to(device).eval()
    fns = runners(models)

    with torch.inference_mode():
        outs = {n: f(audio).float() for n, f in fns.items()}
    agree = {n: float((outs[n] - outs[MODELS[2]]).abs().max()) for n in MODELS[:2]}

    def timed(name: str):
        dtype = args.dtype if name == MODELS[2] else args.peer_dtype

        def call() -> None:
            with torch.inference_mode(), autocast(device, dtype):
                fns[name](audio)
        return call

    times = time_alternating({n: timed(n) for n in MODELS}, args.warmup, args.repeats, device)
    memory = {} if args.no_memory else measure_memory_children(MODELS)
    work = args.batch * args.seconds
    rows = summarize(times, work=work, memory=memory)
    nparams = sum(p.numel() for p in ours.parameters())
    notes = [f"arch {args.arch} ({nparams / 1e6:.1f} M params), batch {args.batch} x {args.seconds:g} s, "
             f"eval + inference_mode, CTC log-probs out",
             f"fp32 agreement with the plugin (max abs diff of log-probs): fairseq {agree[MODELS[0]]:.1e}, "
             f"transformers {agree[MODELS[1]]:.1e}",
             f"precision: plugin {args.dtype}, peers {args.peer_dtype}; warm-up {args.warmup}, "
             f"{args.repeats} alternating repeats",
             "step MB: peak minus resident memory before the first call (fresh process per model)"]
    ratios = (time_ratios("inference, fairseq / plugin (= plugin / fairseq audio s per s)", rows, MODELS[0], MODELS[2])
              + time_ratios("inference, transformers / plugin", rows, MODELS[1], MODELS[2])
              + memory_ratio(rows, MODELS[0], MODELS[2]) + memory_ratio(rows, MODELS[1], MODELS[2]))
    print_report(f"inference: {args.arch}, {args.device}", rows, ratios, machine_info(args.device), notes,
                 throughput_label="audio s / s", json_path=args.json, times=times)


if __name__ == "__main__":
    main()
