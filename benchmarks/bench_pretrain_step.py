"""Pretraining step (forward, backward, optimizer step): plugin ``w2v2`` vs fairseq's ``wav2vec2``.

Both models get the same weights, the same audio batch, the same span mask (``mask_indices``,
drawn once and fed to both: their own random masks would differ), fairseq's own contrastive
criterion (``wav2vec``, infonce, loss weights [0.1, 10]) and fairseq's own Adam. Distractors
and dropout are drawn by each model from its own random stream (same amount of work).

    python benchmarks/bench_pretrain_step.py --arch base --batch 2 --seconds 4
    python benchmarks/bench_pretrain_step.py --arch tiny_cpu --batch 6 --seconds 4
    python benchmarks/bench_pretrain_step.py --device cuda --dtype bf16 --peer-dtype fp16

Prints a table (median/min/max seconds per step, peak memory of a fresh process per model)
and, last, the ratio fairseq time / plugin time with the command, machine and date.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from common import (
    TrainPrecision,
    base_parser,
    batch_audio,
    build_pretrain_pair,
    child_memory,
    fairseq_w2v_config,
    machine_info,
    measure_memory_children,
    memory_ratio,
    pretrain_arch,
    print_report,
    setup,
    summarize,
    sync,
    time_alternating,
    time_ratios,
)

MODELS = ("fairseq wav2vec2", "plugin w2v2")


def make_sample(model: Any, audio: torch.Tensor, seed: int) -> dict[str, Any]:
    """A fairseq-style sample with a fixed span mask (BASE masking: p=0.65, length 10)."""
    from w2v2_plugin.models.masking import compute_mask_indices

    frames = int(model._get_feat_extract_output_lengths(torch.tensor(audio.size(1))))
    g = torch.Generator().manual_seed(seed)
    mask = compute_mask_indices((audio.size(0), frames), None, 0.65, 10, min_masks=2,
                                require_same_masks=True, generator=g).to(audio.device)
    return {"id": torch.arange(audio.size(0), device=audio.device),
            "net_input": {"source": audio, "padding_mask": None, "mask_indices": mask}}


def contrastive_criterion() -> Any:
    """fairseq's own ``wav2vec`` criterion as the BASE recipe sets it (infonce, loss weights
    [0.1, 10]: diversity and feature penalty)."""
    from fairseq.criterions.wav2vec_criterion import Wav2vecCriterion

    return Wav2vecCriterion(None, infonce=True, loss_weights=[0.1, 10],
                            log_keys=["prob_perplexity", "code_perplexity", "temp"])


def make_step(model: torch.nn.Module, sample: dict[str, Any], device: torch.device, dtype_name: str,
              cast_weights: bool = False) -> Callable[[], float]:
    """One training step; ``cast_weights`` = fairseq's own reduced precision (see TrainPrecision)."""
    criterion = contrastive_criterion()
    precision = TrainPrecision(model, device, dtype_name, cast_weights)
    net_input = dict(sample["net_input"], source=precision.inputs(sample["net_input"]["source"]))
    own = dict(sample, net_input=net_input)

    def step() -> float:
        precision.optimizer.zero_grad(set_to_none=True)
        with precision.context():
            loss, _, log = criterion(model, own)
        precision.backward_and_step(loss)
        return log["loss"]

    return step


def compile_plugin(model: torch.nn.Module, what: str) -> None:
    """``torch.compile`` parts of the plugin's model in place (an experiment, not a plugin option).

    ``layers``: each transformer layer (one graph for all of them: their parameters are inputs);
    ``layers+features``: also the feature encoder. The masking, the quantizer and the
    contrastive head stay eager: their shapes depend on the drawn masks.
    """
    if what == "none":
        return
    for layer in model.encoder.layers:
        layer.compile()
    if what == "layers+features":
        model.feature_encoder.compile()


def build_one(name: str, arch: str, seed: int) -> torch.nn.Module:
    """One model alone (memory children: the weights' values do not matter, their size does)."""
    torch.manual_seed(seed)
    if name == MODELS[0]:
        from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Model

        return Wav2Vec2Model(fairseq_w2v_config(pretrain_arch(arch))).train()
    import dataclasses

    from w2v2_plugin.interop.fairseq_wav2vec2 import model_cfg_to_w2v2
    from w2v2_plugin.models.config import W2v2Config
    from w2v2_plugin.models.wav2vec2 import W2v2Model

    fcfg = fairseq_w2v_config(pretrain_arch(arch))
    return W2v2Model(W2v2Config(**model_cfg_to_w2v2(dataclasses.asdict(fcfg)))).train()


def time_first_step(step: Callable[[], float], device: torch.device) -> float:
    """Seconds of one step (the first: torch.compile's compilation happens here)."""
    import time

    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--arch", choices=["base", "tiny_cpu", "large"], default="tiny_cpu")
    p.add_argument("--batch", type=int, default=2, help="utterances per batch")
    p.add_argument("--seconds", type=float, default=4.0, help="length of each utterance")
    p.add_argument("--compile", choices=["none", "layers", "layers+features"], default="none",
                   help="torch.compile these parts of the plugin's model (the first step's time, "
                        "compilation included, is reported apart)")
    args = p.parse_args()
    device = setup(args)
    audio = batch_audio(args.batch, args.seconds, args.seed, device)

    if args.child:  # fresh process, one model: its peak memory over warm-up + 2 steps
        model = build_one(args.child, args.arch, args.seed).to(device)
        if args.child == MODELS[1]:
            compile_plugin(model, args.compile)
        dtype = args.dtype if args.child == MODELS[1] else args.peer_dtype
        sample = make_sample(model, audio, args.seed)
        step = make_step(model, sample, device, dtype, cast_weights=args.child == MODELS[0])
        with child_memory(device):
            for _ in range(args.warmup + 2):
                step()
        return

    ref, ours = build_pretrain_pair(args.arch, args.seed)
    ref, ours = ref.to(device), ours.to(device)
    sample = make_sample(ours, audio, args.seed)
    compile_plugin(ours, args.compile)
    steps = {MODELS[0]: make_step(ref, sample, device, args.peer_dtype, cast_weights=True),
             MODELS[1]: make_step(ours, sample, device, args.dtype)}
    first_step_s = time_first_step(steps[MODELS[1]], device)
    times = time_alternating(steps, args.warmup, args.repeats, device)
    memory = {} if args.no_memory else measure_memory_children(MODELS)
    rows = summarize(times, memory=memory)
    nparams = sum(p.numel() for p in ours.parameters())
    masked = int(sample["net_input"]["mask_indices"][0].sum())
    frames = sample["net_input"]["mask_indices"].size(1)
    notes = [f"arch {args.arch} ({nparams / 1e6:.1f} M params), batch {args.batch} x {args.seconds:g} s "
             f"({frames} frames, {masked} masked per row), LayerDrop 0 (equal work), dropout as the recipe",
             f"precision: plugin {args.dtype}{'' if args.dtype == 'fp32' else ' (autocast)'}, fairseq {args.peer_dtype}"
             f"{'' if args.peer_dtype == 'fp32' else ' (weights cast, as its --fp16)'}; optimizer fairseq Adam; "
             f"criterion fairseq wav2vec (infonce); warm-up {args.warmup}, {args.repeats} alternating repeats",
             "step MB: peak minus resident memory before the first step (fresh process per model)",
             f"plugin compile: {args.compile}; the plugin's first step took {first_step_s:.1f} s"]
    label = f"pretraining step, fairseq {args.peer_dtype} / plugin {args.dtype}"
    ratios = (time_ratios(label, rows, MODELS[0], MODELS[1])
              + memory_ratio(rows, MODELS[0], MODELS[1]))
    print_report(f"pretraining step: {args.arch}, {args.device}", rows, ratios, machine_info(args.device),
                 notes, json_path=args.json, times=times)


if __name__ == "__main__":
    main()
