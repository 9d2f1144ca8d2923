"""Shared helpers of the side-by-side benchmarks (plugin vs fairseq vs transformers).

Every benchmark runs all its models in ONE process on the same weights and the same batches,
warms each up, then times repeated steps ALTERNATING between the models (order reversed every
round, so that a slow patch of a shared machine hits every model alike) and reports medians.
Peak memory is measured per model in a fresh child process (``--child MODEL``): on CPU the
child's resident-set high-water mark over the measured steps (/proc/self/status VmHWM, reset
after the model is built; ``resource.getrusage`` max RSS where that reset is unavailable;
tracemalloc does not see torch's allocations), on CUDA ``torch.cuda.max_memory_allocated``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(ROOT))

import logging  # noqa: E402

import torch  # noqa: E402

logging.getLogger("fairseq").setLevel(logging.WARNING)  # fairseq logs whole model configs at INFO

CONFIG_DIR = ROOT / "examples" / "wav2vec2" / "config"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ---- machine and command ------------------------------------------------------------------

class Machine(NamedTuple):
    cpu_model: str
    cores: int
    torch_threads: int
    torch_version: str
    device_name: str
    date: str
    load: str  # 1/5/15-minute load averages: the machine is shared


def machine_info(device: str) -> Machine:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    dev = "cpu"
    if device == "cuda" and torch.cuda.is_available():
        dev = torch.cuda.get_device_name(0)
    load = "n/a"
    with contextlib.suppress(OSError):
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return Machine(cpu, os.cpu_count() or 0, torch.get_num_threads(), torch.__version__, dev,
                   datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), load)


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


# ---- common arguments -------------------------------------------------------------------------

def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=list(DTYPES), default="fp32",
                   help="precision of the plugin (bf16/fp16: autocast with fp32 weights)")
    p.add_argument("--peer-dtype", choices=list(DTYPES), default=None,
                   help="precision of the peers (default: --dtype); training steps cast fairseq's "
                        "weights (its own --fp16/--bf16 way), inference uses autocast")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per model (alternating)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-memory", action="store_true", help="skip the per-model peak-memory children")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: memory child
    return p


def setup(args: argparse.Namespace) -> torch.device:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch")
    if args.peer_dtype is None:
        args.peer_dtype = args.dtype
    return torch.device(args.device)


def autocast(device: torch.device, dtype_name: str) -> contextlib.AbstractContextManager:
    if dtype_name == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype_name])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---- model configurations ---------------------------------------------------------------------

def yaml_model_section(relpath: str) -> dict[str, Any]:
    """The ``model:`` section of one of the project's shipped yaml configs, without ``_name``."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(CONFIG_DIR / relpath)
    model = OmegaConf.to_container(cfg.model, resolve=False)
    model.pop("_name", None)
    return model


def pretrain_arch(name: str) -> dict[str, Any]:
    """Model fields of the named architecture (fairseq Wav2Vec2Config names).

    LayerDrop is set to 0 so that both implementations do the same work in every step (their
    layer-skipping coin flips come from different random streams).
    """
    if name == "base":
        model = yaml_model_section("pretraining/base_librispeech.yaml")
    elif name == "tiny_cpu":
        model = yaml_model_section("pretraining/tiny_cpu.yaml")
    elif name == "large":  # layer-norm extractor, pre-LN transformer, conv bias
        model = yaml_model_section("pretraining/large_librivox.yaml")
    else:
        raise SystemExit(f"unknown architecture {name!r} (base, tiny_cpu, large)")
    model["encoder_layerdrop"] = 0.0
    return model


def fairseq_w2v_config(fields: Mapping[str, Any]):
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config

    known = {f.name for f in dataclasses.fields(Wav2Vec2Config)}
    return Wav2Vec2Config(**{k: v for k, v in fields.items() if k in known})


def build_pretrain_pair(arch: str, seed: int):
    """(fairseq Wav2Vec2Model, plugin W2v2Model) with identical weights, in train mode."""
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Model

    import w2v2_plugin  # noqa: F401
    from w2v2_plugin.interop.fairseq_wav2vec2 import fairseq_to_plugin_state_dict, model_cfg_to_w2v2
    from w2v2_plugin.models.config import W2v2Config
    from w2v2_plugin.models.wav2vec2 import W2v2Model

    torch.manual_seed(seed)
    fcfg = fairseq_w2v_config(pretrain_arch(arch))
    ref = Wav2Vec2Model(fcfg)
    cfg = W2v2Config(**model_cfg_to_w2v2(dataclasses.asdict(fcfg)))
    ours = W2v2Model(cfg)
    ours.load_state_dict(fairseq_to_plugin_state_dict(ref.state_dict()))
    return ref.train(), ours.train()


def fairseq_adam(params) -> torch.optim.Optimizer:
    """fairseq's own Adam (what ``optimizer._name: adam`` runs on CPU) with the BASE recipe's
    settings; both models get the same optimizer class."""
    from fairseq.optim.adam import Adam

    return Adam(params, lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)


def batch_audio(batch: int, seconds: float, seed: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.1 * torch.randn(batch, int(round(seconds * 16000)), generator=g)).to(device)


# ---- timing ------------------------------------------------------------------------------------

class Timings(NamedTuple):
    wall: dict[str, list[float]]  # seconds per call, wall clock
    cpu: dict[str, list[float]]  # process CPU seconds per call (all threads): the work done,
    # much less sensitive than wall time to other jobs on a shared machine


def time_alternating(steps: Mapping[str, Callable[[], Any]], warmup: int, repeats: int,
                     device: torch.device, progress: bool = True) -> Timings:
    """Warm every model up, then time ``repeats`` calls of each, alternating (ABBA order)."""
    names = list(steps)
    for name in names:
        for _ in range(warmup):
            steps[name]()
    sync(device)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    try:
        from tqdm import tqdm

        rounds: Any = tqdm(range(repeats), desc="timed rounds", disable=not progress, file=sys.stderr)
    except ImportError:  # pragma: no cover
        rounds = range(repeats)
    for r in rounds:
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            steps[name]()
            sync(device)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return Timings(wall, cpu)


class Row(NamedTuple):
    name: str
    median_s: float  # wall clock
    min_s: float
    max_s: float
    cpu_median_s: float
    per_second: float | None  # throughput (e.g. seconds of audio per second), if meaningful
    peak_mb: float | None
    delta_mb: float | None  # peak minus resident memory before the first step


def summarize(times: Timings, work: float | None = None,
              memory: Mapping[str, Mapping[str, float]] | None = None) -> list[Row]:
    rows = []
    for name, ts in times.wall.items():
        med = statistics.median(ts)
        mem = (memory or {}).get(name, {})
        rows.append(Row(name, med, min(ts), max(ts), statistics.median(times.cpu[name]),
                        work / med if work else None, mem.get("peak_mb"), mem.get("delta_mb")))
    return rows


def time_ratios(label: str, rows: Sequence[Row], peer: str, plugin: str) -> list[tuple]:
    """peer / plugin for wall-clock medians (the headline) and CPU-time medians."""
    by = {r.name: r for r in rows}
    return [(f"{label} (wall time)", by[peer].median_s / by[plugin].median_s, None),
            (f"{label} (CPU time)", by[peer].cpu_median_s / by[plugin].cpu_median_s, None)]


def memory_ratio(rows: Sequence[Row], peer: str, plugin: str) -> list[tuple]:
    by = {r.name: r for r in rows}
    if by[peer].peak_mb is None or by[plugin].peak_mb is None:
        return []
    out = [(f"peak memory, plugin / {peer} (lower is better)", by[plugin].peak_mb / by[peer].peak_mb, None)]
    if by[peer].delta_mb and by[plugin].delta_mb is not None:
        out.append((f"step memory, plugin / {peer} (lower is better)", by[plugin].delta_mb / by[peer].delta_mb, None))
    return out


def print_report(title: str, rows: Sequence[Row], ratios: Sequence[tuple], machine: Machine,
                 notes: Sequence[str] = (), throughput_label: str = "",
                 json_path: str | None = None, times: Timings | None = None) -> None:
    """Table, then notes, then (last) ratios with the command, machine and date."""
    print()
    print(f"## {title}")
    head = (f"| model | median s | min s | max s | CPU s |{' ' + throughput_label + ' |' if throughput_label else ''}"
            f" peak MB | step MB |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        tp = f" {r.per_second:.2f} |" if throughput_label else ""
        pk = f"{r.peak_mb:.0f}" if r.peak_mb is not None else "-"
        dl = f"{r.delta_mb:.0f}" if r.delta_mb is not None else "-"
        cells = f"{r.median_s:.3f} | {r.min_s:.3f} | {r.max_s:.3f} | {r.cpu_median_s:.3f}"
        print(f"| {r.name} | {cells} |{tp} {pk} | {dl} |")
    for n in notes:
        print(f"note: {n}")
    print()
    for label, value, _ in ratios:
        print(f"RATIO {label}: {value:.2f}x")
    print(f"command: {command_line()}")
    print(f"machine: {machine.cpu_model}, {machine.cores} cores, torch {machine.torch_version} "
          f"({machine.torch_threads} threads), device {machine.device_name}, load {machine.load}")
    print(f"date: {machine.date}")
    if json_path:
        out = {"title": title, "rows": [r._asdict() for r in rows],
               "ratios": [{"label": label, "ratio": v} for label, v, _ in ratios],
               "times": times._asdict() if times is not None else None,
               "command": command_line(), "machine": machine._asdict(), "notes": list(notes)}
        tmp = json_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, json_path)


# ---- peak memory in fresh children ---------------------------------------------------------------

def status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def current_rss_mb() -> float:
    return status_mb("VmRSS")


def reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


@contextlib.contextmanager
def child_memory(device: torch.device) -> Iterator[None]:
    """In a memory child: report the peak around the measured steps as one JSON line."""
    hwm = False
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    else:
        hwm = reset_peak_rss()  # so that building the model does not count
        before = current_rss_mb()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = status_mb("VmHWM") if hwm else peak_rss_mb()
    print("MEMORY " + json.dumps({"peak_mb": peak, "delta_mb": peak - before}), flush=True)


def measure_memory_children(names: Sequence[str], argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Rerun this script once per model with ``--child NAME``; collect each child's peak."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out: dict[str, dict[str, float]] = {}
    for name in names:
        cmd = [sys.executable, sys.argv[0], *argv, "--child", name, "--no-memory"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("MEMORY ")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            print(f"warning: memory child for {name} failed: {' | '.join(tail)}", file=sys.stderr)
            continue
        out[name] = json.loads(lines[-1][len("MEMORY "):])
    return out


# ---- CTC models (fine-tuning and inference) --------------------------------------------------------

LETTERS = "|ETAOINSHRDLUCMWFGYPBVKXJQZ'"


def letter_dictionary():
    """fairseq Dictionary of the LibriSpeech letters (4 specials + 28 symbols = 32 outputs)."""
    from fairseq.data import Dictionary

    d = Dictionary()
    for c in LETTERS:
        d.add_symbol(c)
    return d


def save_fairseq_pretrained(arch: str, seed: int, path: Path) -> Path:
    """A fairseq ``wav2vec2`` pretraining checkpoint of ``arch`` in fairseq's hydra layout."""
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Model
    from omegaconf import OmegaConf

    torch.manual_seed(seed)
    fcfg = fairseq_w2v_config(pretrain_arch(arch))
    model = Wav2Vec2Model(fcfg)
    cfg = {"_name": None, "common": {"tpu": False, "seed": seed},
           "model": dict(OmegaConf.to_container(OmegaConf.structured(fcfg), enum_to_str=True), _name="wav2vec2"),
           "task": {"_name": "audio_pretraining", "data": str(path.parent), "sample_rate": 16000,
                    "normalize": False}}
    torch.save({"cfg": cfg, "model": model.state_dict(), "args": None, "extra_state": {},
                "optimizer_history": [{"criterion_name": "Wav2vecCriterion", "optimizer_name": "Adam",
                                       "lr_scheduler_state": {}, "num_updates": 0}],
                "last_optimizer_state": None}, path)
    return path


def finetune_overrides(train: bool) -> dict[str, Any]:
    """Fine-tuning fields of the shipped base_10h recipe (fairseq Wav2Vec2AsrConfig names).

    LayerDrop 0 for equal work; freeze_finetune_updates 0 so the transformer trains.
    """
    model = yaml_model_section("finetuning/base_10h.yaml")
    model.pop("w2v_path", None)
    model["layerdrop"] = 0.0
    model["freeze_finetune_updates"] = 0
    if not train:
        model["apply_mask"] = False
    return model


def build_fairseq_ctc(pretrained: Path, overrides: Mapping[str, Any]):
    from types import SimpleNamespace

    from fairseq.models.wav2vec.wav2vec2_asr import Wav2Vec2CtcConfig, Wav2VecCtc

    ccfg = Wav2Vec2CtcConfig(w2v_path=str(pretrained), normalize=False, data=str(pretrained.parent),
                             ddp_backend="legacy_ddp", **dict(overrides))
    with contextlib.redirect_stdout(sys.stderr):  # fairseq print()s the whole pretrained model
        return Wav2VecCtc.build_model(ccfg, SimpleNamespace(target_dictionary=letter_dictionary()))


def build_plugin_ctc(pretrained: Path, overrides: Mapping[str, Any]):
    from types import SimpleNamespace

    import w2v2_plugin  # noqa: F401
    from w2v2_plugin.models.ctc import W2v2Ctc, W2v2CtcConfig

    cfg = W2v2CtcConfig(w2v_path=str(pretrained), **dict(overrides))
    return W2v2Ctc.build_model(cfg, SimpleNamespace(target_dictionary=letter_dictionary()))


def build_ctc_pair(arch: str, seed: int, tmpdir: Path, train: bool):
    """(fairseq Wav2VecCtc, plugin W2v2Ctc) on the same pretrained weights and the same head."""
    from w2v2_plugin.interop.fairseq_ctc import convert_ctc_state_dict

    pretrained = save_fairseq_pretrained(arch, seed, tmpdir / "pretrained.pt")
    overrides = finetune_overrides(train)
    ref = build_fairseq_ctc(pretrained, overrides)
    ours = build_plugin_ctc(pretrained, overrides)
    with torch.no_grad():
        ref.w2v_encoder.proj.bias.normal_(0, 0.5)
    ours.load_state_dict(convert_ctc_state_dict(ref.state_dict()))
    return ref, ours


def plugin_ctc_to_hf(model, dictionary_size: int):
    """transformers Wav2Vec2ForCTC with the plugin CTC model's weights (the project's exporter's
    config and key map, in memory; it raises on any key left unmapped)."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    from w2v2_plugin.interop.hf_export import hf_config_dict, hf_state_dict

    w2v = model.w2v_encoder.w2v_model
    hf_cfg = hf_config_dict(w2v.cfg, model.cfg, dictionary_size, w2v.feature_encoder.conv_layers_spec)
    hf = Wav2Vec2ForCTC(Wav2Vec2Config(**hf_cfg))
    hf.load_state_dict(hf_state_dict(model, set(hf.state_dict())), strict=True)
    return hf.to(next(model.parameters()).device)


class TrainPrecision:
    """How one model trains at ``dtype_name``.

    ``cast_weights=False`` (the plugin): fp32 weights under autocast, GradScaler for fp16.
    ``cast_weights=True`` (fairseq): fairseq's own --fp16/--bf16 way, weights cast to the
    dtype, fp32 Adam state (fairseq's Adam keeps it for half parameters) and a static loss
    scale for fp16. fairseq's wav2vec2 cannot train under autocast on current torch: its
    ``x[mask_indices] = self.mask_emb`` puts an fp32 vector into a half tensor and index_put
    refuses mixed dtypes.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype_name: str, cast_weights: bool) -> None:
        self.device, self.dtype_name = device, dtype_name
        self.cast = cast_weights and dtype_name != "fp32"
        if self.cast:
            model.to(DTYPES[dtype_name])
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = fairseq_adam(self.params)
        self.scaler = torch.amp.GradScaler(device.type) if dtype_name == "fp16" and not self.cast else None
        self.static_scale = 128.0 if dtype_name == "fp16" and self.cast else 1.0

    def inputs(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(DTYPES[self.dtype_name]) if self.cast and t.is_floating_point() else t

    def context(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if self.cast else autocast(self.device, self.dtype_name)

    def backward_and_step(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return
        (loss * self.static_scale if self.static_scale != 1.0 else loss).backward()
        if self.static_scale != 1.0:
            for p in self.params:
                if p.grad is not None:
                    p.grad.mul_(1.0 / self.static_scale)
        self.optimizer.step()
