"""Acoustic model -> CTC emissions (log-probs per frame), with long-audio chunking.

Loading: the file is read without running code from it (:mod:`w2v2_plugin.interop.checkpoint_io`),
then fairseq's ``checkpoint_utils.load_model_ensemble_and_task`` builds the model from that
state (the plugin imported, as ``--user-dir`` does); fairseq ``wav2vec_ctc`` checkpoints go
through :mod:`w2v2_plugin.interop.fairseq_ctc` first, in memory. Any
model with fairseq's CTC interface works: ``net_out = model(source=wav, padding_mask=pm)``,
``model.get_normalized_probs(net_out, log_probs=True)`` -> (frame, batch, unit).

Long audio: an input longer than ``chunk_seconds + 2 * context_seconds`` is cut into windows
of ``chunk_seconds`` plus ``context_seconds`` of audio on each side; each window's emissions are
kept only for its centre (the chunk), so every kept frame saw at least ``context_seconds`` of
audio on both sides (or the file edge). Window starts are multiples of the feature encoder's
stride, so the windows' frame grids coincide with the whole file's: a model whose frames only
see local context gives exactly the whole-file emissions, and memory is bounded by the window.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
import torch.nn.functional as F

from ..decoding.errors import DecodingError
from ..decoding.units import UnitDictionary
from ..models.conv_geometry import ConvLayerSpec, ConvSpecError, default_conv_layers, frame_geometry, parse_conv_layers
from ..models.feature_cache import drop_feature_caches

logger = logging.getLogger(__name__)

PRETRAINING_MODELS = ("wav2vec2", "w2v2", "wav2vec", "hubert", "data2vec_audio")


@dataclass
class ChunkConfig:
    """How long inputs are cut (seconds of audio)."""

    chunk_seconds: float = field(default=30.0, metadata={"help": "audio per chunk whose frames are kept"})
    context_seconds: float = field(default=2.5, metadata={"help": "extra audio on each side of a chunk, "
                                                                  "seen by the model but not kept"})


class _CtcOutputs(Protocol):
    """What is used of a fairseq CTC model besides calling it."""

    def get_normalized_probs(self, net_output: Any, log_probs: bool) -> torch.Tensor: ...


class AcousticModel:
    """A loaded CTC model with its units, sample rate and input normalisation."""

    def __init__(self, model: torch.nn.Module, units: UnitDictionary, sample_rate: int = 16000,
                 normalize: bool = False, source: str = "<memory>", device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.units = units
        self.sample_rate = sample_rate
        self.normalize = normalize
        self.source = source
        self.geometry = frame_geometry(_find_conv_layers(model))
        # wav2vec 2.0 BASE's feature encoder group-normalises each channel over *time*, padding
        # included, so a padded utterance gets different emissions than alone (fairseq's
        # behaviour, large on short utterances batched with long ones). Such models are run
        # one utterance at a time; LARGE's per-frame layer norm is padding-safe and batches.
        self.batchable = not any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())

    @property
    def frame_seconds(self) -> float:
        return self.geometry.stride / self.sample_rate

    @torch.no_grad()
    def forward_batch(self, wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Emissions for a batch of (already normalised) waveforms: one (frame, unit) array each."""
        lengths = [len(w) for w in wavs]
        longest = max(lengths)
        source = torch.zeros(len(wavs), longest)  # (batch, sample)
        padding = torch.ones(len(wavs), longest, dtype=torch.bool)  # True = padding
        for i, w in enumerate(wavs):
            source[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
            padding[i, : len(w)] = False
        net_out = self.model(source=source.to(self.device), padding_mask=padding.to(self.device))
        lprobs = cast(_CtcOutputs, self.model).get_normalized_probs(net_out, log_probs=True)  # (frame, batch, unit)
        lprobs = lprobs.transpose(0, 1).float().cpu()  # (batch, frame, unit)
        if lprobs.size(-1) != len(self.units):
            raise DecodingError(f"{self.source}: the model outputs {lprobs.size(-1)} units but its dictionary "
                                f"has {len(self.units)}; pass the dictionary it was trained with")
        frame_pad = net_out.get("padding_mask") if isinstance(net_out, dict) else None
        out = []
        for i, n in enumerate(lengths):
            if frame_pad is not None and frame_pad.numel():
                valid = int((~frame_pad[i]).sum())
            else:
                valid = min(lprobs.size(1), self.geometry.n_frames(n))
            out.append(lprobs[i, :valid].numpy().copy())
        return out

    def prepare(self, wav: np.ndarray) -> np.ndarray:
        """fairseq's input normalisation (``task.normalize``: zero mean, unit variance per file)."""
        wav = np.asarray(wav, dtype=np.float32)
        if self.normalize and len(wav):
            wav = F.layer_norm(torch.from_numpy(wav), wav.shape).numpy()
        return wav

    def emissions(self, wav: np.ndarray, chunk: ChunkConfig | None = None, max_samples: int = 2_000_000
                  ) -> np.ndarray:
        """(frame, unit) log-probs of one utterance; chunked when longer than a window."""
        wav = self.prepare(wav)
        if chunk is None or len(wav) <= self.window(chunk)[0] + 2 * self.window(chunk)[1]:
            return self.forward_batch([wav])[0]
        return self.chunked_emissions(wav, chunk, max_samples)

    def window(self, chunk: ChunkConfig) -> tuple[int, int]:
        """Chunk and context lengths in samples, rounded to whole frame strides."""
        s = self.geometry.stride
        c = max(1, round(chunk.chunk_seconds * self.sample_rate / s)) * s
        k = max(0, round(chunk.context_seconds * self.sample_rate / s)) * s
        return c, k

    def chunked_emissions(self, wav: np.ndarray, chunk: ChunkConfig, max_samples: int = 2_000_000,
                          on_progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Stitch the centre frames of overlapping windows (``wav`` already normalised);
        ``on_progress(seconds)`` after each group of windows, for long files' progress bars."""
        c, k = self.window(chunk)
        stride = self.geometry.stride
        n_total = self.geometry.n_frames(len(wav))
        starts = list(range(0, len(wav), c))
        pieces: list[np.ndarray] = []
        per_batch = max(1, max_samples // (c + 2 * k))
        for b in range(0, len(starts), per_batch):
            group = starts[b: b + per_batch]
            # frame i covers samples [stride*i, stride*i + receptive_field): the right edge needs
            # receptive_field - stride samples more for the chunk's last frame to exist
            tail = self.geometry.receptive_field - stride
            windows = [(max(0, s - k), min(len(wav), s + c + k + tail)) for s in group]
            ems = self.forward_batch([wav[a:e] for a, e in windows])
            for s, (a, _), em in zip(group, windows, ems, strict=True):
                first = (s - a) // stride  # frame of the window that is global frame s / stride
                lo, hi = s // stride, min((s + c) // stride, n_total)
                pieces.append(em[first: first + (hi - lo)])
            if on_progress is not None:
                on_progress(sum(min(c, len(wav) - s) for s in group) / self.sample_rate)
        out = np.concatenate(pieces, axis=0)  # (frame, unit)
        return out


def _find_conv_layers(model: torch.nn.Module) -> list[ConvLayerSpec]:
    """The feature encoder's (dim, kernel, stride) list from the model's config, if it has one."""
    for m in model.modules():
        cfg = getattr(m, "cfg", None)
        spec = getattr(cfg, "conv_feature_layers", None) if cfg is not None else None
        if isinstance(spec, str):
            try:
                # fairseq's own format, a list expression such as "[(512, 10, 5)] * 2": parsed, not run
                return parse_conv_layers(spec)
            except ConvSpecError as e:
                raise DecodingError(f"model config: {e}") from None
    logger.warning("model config has no conv_feature_layers; assuming wav2vec 2.0's (stride 320)")
    return default_conv_layers()


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DecodingError(f"--device {device}: no CUDA GPU visible to torch; use --device cpu")
    return device


def load_acoustic_model(path: str | Path, data_dir: str | None = None, dict_path: str | None = None,
                        device: str = "cpu", trust: bool = False) -> AcousticModel:
    """Load a fine-tuned CTC checkpoint (plugin ``w2v2_ctc``, or fairseq ``wav2vec_ctc`` converted).

    The file is read once, by :func:`w2v2_plugin.interop.checkpoint_io.load_checkpoint_file` (no code
    run from it unless ``trust``, the user's ``--trust-checkpoint``), and fairseq builds the
    model from that state."""
    import w2v2_plugin  # noqa: F401  (registers the plugin's tasks and models, as --user-dir does)

    from ..interop.checkpoint_io import (
        UnsafeCheckpointError,
        checkpoint_model_cfg,
        load_checkpoint_file,
        load_model_ensemble_and_task,
    )
    from ..interop.fairseq_ctc import convert_wav2vec_ctc_checkpoint, is_wav2vec_ctc

    path = Path(path)
    if not path.is_file():
        raise DecodingError(f"{path}: checkpoint not found")
    try:
        state = load_checkpoint_file(str(path), trust=trust, opt_in="pass --trust-checkpoint")
    except UnsafeCheckpointError as e:
        raise DecodingError(str(e)) from None
    except Exception as e:
        raise DecodingError(f"{path}: cannot read the checkpoint ({str(e).splitlines()[0][:200]})") from None
    try:
        model_name = checkpoint_model_cfg(state).get("_name")
    except Exception:  # unusual layouts: let fairseq's loader decide below
        model_name = None
    if model_name in PRETRAINING_MODELS:
        raise DecodingError(f"{path}: a pretraining checkpoint (model {model_name}), which has no CTC output; "
                            f"fine-tune it first and pass the fine-tuned checkpoint")
    overrides: dict[str, Any] = {}
    if data_dir:
        overrides["data"] = str(data_dir)
    if is_wav2vec_ctc(state):
        if dict_path is None and data_dir and (Path(data_dir) / "dict.ltr.txt").is_file():
            dict_path = str(Path(data_dir) / "dict.ltr.txt")
        try:
            state = convert_wav2vec_ctc_checkpoint(state, dict_path)
        except Exception as e:
            raise DecodingError(f"{path}: fairseq wav2vec_ctc checkpoint could not be converted "
                                f"({str(e).splitlines()[0][:200]}); try 'w2v2-convert' with --dict") from None
    try:
        models, _cfg, task = load_model_ensemble_and_task(str(path), arg_overrides=overrides, state=state)
    except DecodingError:
        raise
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise DecodingError(f"{path}: fairseq could not build the model ({type(e).__name__}: {msg}); is it a "
                            f"fine-tuned CTC checkpoint?") from None
    del state
    model = models[0]
    drop_feature_caches(model)  # a fine-tuning option (model.feature_cache_mb): no use here
    if not hasattr(model, "get_normalized_probs"):
        raise DecodingError(f"{path}: the model has no CTC output (get_normalized_probs); pass a fine-tuned "
                            f"CTC checkpoint, not a pretraining one")
    tdict = getattr(task, "target_dictionary", None)
    if dict_path:
        units = UnitDictionary.load(dict_path)
    elif tdict is not None:
        units = UnitDictionary.from_symbols(tdict.symbols, source=f"{path} (target dictionary)")
    else:
        raise DecodingError(f"{path}: the checkpoint carries no unit dictionary; pass --dict dict.ltr.txt")
    task_cfg = getattr(task, "cfg", None)
    sample_rate = int(getattr(task_cfg, "sample_rate", 16000) or 16000)
    normalize = bool(getattr(task_cfg, "normalize", False))
    return AcousticModel(model, units, sample_rate, normalize, str(path), resolve_device(device))


def plan_batches(lengths: Sequence[int], max_samples: int, max_batch: int = 64) -> Iterator[list[int]]:
    """Group utterances of similar length, each group's padded size within ``max_samples``."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batch: list[int] = []
    longest = 0
    for i in order:
        n = max(1, lengths[i])
        if batch and (max(longest, n) * (len(batch) + 1) > max_samples or len(batch) >= max_batch):
            yield batch
            batch, longest = [], 0
        batch.append(i)
        longest = max(longest, n)
    if batch:
        yield batch
