"""Checkpoint files: read without running code from them, written as plain data, all or nothing.

Every checkpoint the plugin opens -- ``w2v2-convert``'s input, ``w2v2-infer --path``, the
``--to-hf`` export, ``model.w2v_path`` of fine-tuning -- goes through
:func:`load_checkpoint_file`: ``torch.load(weights_only=True)`` inside the scoped
``torch.serialization.safe_globals`` context (never the process-wide ``add_safe_globals``),
admitting exactly the classes that fairseq's own files pickle (:data:`SAFE_GLOBAL_NAMES`).
Models are built from that state with :func:`load_model_ensemble_and_task`, which hands it to
fairseq's loader (``state=``) so fairseq never unpickles the file a second time.

A file that needs any other global is refused with one line naming the file, the global and
the opt-in (``--trust-checkpoint`` / ``model.trust_checkpoint=true``); only with the opt-in is
it loaded with ``weights_only=False``, which runs whatever the file's pickle asks for.

How the list was made: ``torch.serialization.get_unsafe_globals_in_checkpoint`` on files
written by fairseq 0.12 itself -- ``fairseq-hydra-train`` pretraining (``wav2vec2``) and
fine-tuning (``wav2vec_ctc``) runs, and the legacy ``args`` layout of the published
``wav2vec_small.pt`` / ``*_960h.pt`` files -- gives ``argparse.Namespace`` (legacy ``args``
and ``w2v_args``) and ``fairseq.data.dictionary.Dictionary`` (``task_state`` of fine-tuned
files); hydra pretraining files need nothing. Files of older fairseq/numpy versions also hold
numpy scalars in their metrics (``numpy.core.multiarray.scalar`` before numpy 2,
``numpy._core.multiarray.scalar`` since) with their ``numpy.dtype``; rebuilding a scalar also
needs its dtype class (``numpy.dtypes.Float64DType`` ...), which the unpickler meets without a
GLOBAL, so the static scan cannot list it: the numeric and boolean ones are admitted.

Writing: a checkpoint the plugin writes holds plain data only (:func:`to_plain`), so it loads
with torch's default ``weights_only=True``; it and its ``.safetensors`` copy are written
through :func:`w2v2_common.fileio.atomic_path` (never a half-written file).
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch

from w2v2_common.errors import W2v2Error
from w2v2_common.fileio import atomic_path

# Globals admitted by name (the numpy dtype classes are added by object: see _dtype_classes).
SAFE_GLOBAL_NAMES: tuple[str, ...] = (
    "argparse.Namespace",
    "fairseq.data.dictionary.Dictionary",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.dtype",
)
# numpy scalar kinds whose dtype class is admitted: bool, signed/unsigned ints, floats, complex
_NUMPY_SCALAR_CODES = "?bBhHiIlLqQeFfdgDG"
DEFAULT_OPT_IN = ("pass --trust-checkpoint (w2v2-infer, w2v2-convert) or set model.trust_checkpoint=true "
                  "(fine-tuning)")


class CheckpointError(W2v2Error, ValueError):
    """A checkpoint file that cannot be read or converted; the message says which and why."""


class UnsafeCheckpointError(CheckpointError):
    """The file's pickle needs a global outside :data:`SAFE_GLOBAL_NAMES`: loading it could run code."""


def _dtype_classes() -> list[type]:
    import numpy as np

    out: list[type] = []
    for code in _NUMPY_SCALAR_CODES:
        cls = type(np.dtype(code))
        if cls is not np.dtype and cls not in out:  # (numpy < 1.20: every dtype is a plain np.dtype)
            out.append(cls)
    return out


@lru_cache(maxsize=1)
def safe_globals() -> tuple[Any, ...]:
    """The objects behind :data:`SAFE_GLOBAL_NAMES`, as ``safe_globals`` takes them.

    The numpy scalar constructor is taken from a scalar's own ``__reduce__`` and admitted under
    both spellings, so neither ``numpy.core`` (a deprecated shim in numpy 2) nor ``numpy._core``
    (missing in older numpy 1.x) is ever imported by name.
    """
    import numpy as np

    scalar = np.float64(0).__reduce__()[0]
    by_name: dict[str, Any] = {"argparse.Namespace": argparse.Namespace,
                               "numpy.core.multiarray.scalar": scalar, "numpy._core.multiarray.scalar": scalar,
                               "numpy.dtype": np.dtype}
    try:
        from fairseq.data.dictionary import Dictionary

        by_name["fairseq.data.dictionary.Dictionary"] = Dictionary
    except ImportError:  # pragma: no cover - without fairseq no file can need its Dictionary restored
        pass
    assert set(by_name) <= set(SAFE_GLOBAL_NAMES)  # noqa: S101 - an invariant of the table, not input checking
    return tuple((by_name[name], name) for name in SAFE_GLOBAL_NAMES if name in by_name) + tuple(_dtype_classes())


def safe_global_names() -> list[str]:
    """Every admitted global's name (for documentation and tests)."""
    return [g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in safe_globals()]


_REFUSED = (re.compile(r"GLOBAL (\S+)"), re.compile(r"but got <class '([^']+)'>"),
            re.compile(r"unrecognized function (\S+)"))
_REFUSAL_MARKERS = ("GLOBAL ", "allowlisted via `add_safe_globals`", "unrecognized function")


def _refused_globals(path: str, error: BaseException) -> list[str] | None:
    """The globals a weights_only load refused, or None if the error is not such a refusal."""
    msg = str(error)
    if not any(m in msg for m in _REFUSAL_MARKERS):
        return None
    try:  # a static scan of the pickle names every offending GLOBAL (zip-format files only)
        with torch.serialization.safe_globals(list(safe_globals())):
            names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - legacy (non-zip) files: the error message names the first
        names = []
    if not names:
        for pattern in _REFUSED:
            m = pattern.search(msg)
            if m:
                names = [m.group(1).rstrip(".,")]
                break
    return names or ["an unlisted global"]


def load_checkpoint_file(path: str | os.PathLike[str], trust: bool = False,
                         opt_in: str = DEFAULT_OPT_IN) -> dict[str, Any]:
    """Load a fairseq/plugin checkpoint (a dict with a ``model`` entry) without running code.

    ``trust=True`` (the user's explicit opt-in for a file they trust) loads with
    ``weights_only=False``. ``opt_in`` is how the caller's user says that, for the message.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        if trust:
            state = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(list(safe_globals())):
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        names = _refused_globals(path, e)
        if names is None:
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({_first_line(e)})") from None
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise UnsafeCheckpointError(
            f"{path}: refused to load: its pickle needs {shown}, which is not among the plain-data "
            f"classes of fairseq checkpoints, and unpickling it could run code; if you trust this file, "
            f"{opt_in}") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: "
                              f"{_first_line(e)})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a fairseq checkpoint (no 'model' entry)")
    return state


def _first_line(e: BaseException) -> str:
    """The informative line of an exception (torch's weights_only errors are paragraphs)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "WeightsUnpickler error" in ln:
            rest = ln.split("WeightsUnpickler error:", 1)[1].strip()
            if rest:
                return rest[:200]
            i = lines.index(ln)
            return lines[i + 1][:200] if i + 1 < len(lines) else ln[:200]
    return (lines[0] if lines else type(e).__name__)[:200]


def prepare_fairseq_state(state: dict[str, Any], arg_overrides: Mapping[str, Any] | None = None
                          ) -> dict[str, Any]:
    """What fairseq 0.12's ``checkpoint_utils.load_checkpoint_to_cpu`` does after its own
    ``torch.load``: arg overrides, ``cfg`` as an OmegaConf object, the legacy-state upgrade."""
    from fairseq import checkpoint_utils
    from fairseq.dataclass.utils import overwrite_args_by_name
    from omegaconf import OmegaConf

    if "args" in state and state["args"] is not None and arg_overrides is not None:
        for name, value in arg_overrides.items():
            setattr(state["args"], name, value)
    if "cfg" in state and state["cfg"] is not None:
        state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
        if arg_overrides is not None:
            overwrite_args_by_name(state["cfg"], dict(arg_overrides))
    # fairseq has no public function for this step alone: its public load_checkpoint_to_cpu
    # would torch.load the file a second time, outside the safe loader above. This is the
    # plugin's one use of a private fairseq name.
    return checkpoint_utils._upgrade_state_dict(state)


def load_model_ensemble_and_task(path: str | os.PathLike[str], arg_overrides: Mapping[str, Any] | None = None,
                                 trust: bool = False, state: dict[str, Any] | None = None,
                                 opt_in: str = DEFAULT_OPT_IN, strict: bool = True):
    """fairseq's ``load_model_ensemble_and_task([path])``, the state read by
    :func:`load_checkpoint_file` (or given: e.g. a converted one) instead of fairseq's torch.load."""
    from fairseq import checkpoint_utils

    if state is None:
        state = load_checkpoint_file(path, trust=trust, opt_in=opt_in)
    state = prepare_fairseq_state(state, arg_overrides)
    overrides: dict[str, Any] | None = dict(arg_overrides) if arg_overrides is not None else None
    return checkpoint_utils.load_model_ensemble_and_task([os.fspath(path)], arg_overrides=overrides,
                                                         strict=strict, state=state)



# ---- the plugin's checkpoints as plain data -----------------------------------------------------
# The key under which a fairseq Dictionary's plain-data form is stored in a checkpoint's
# task_state (W2v2FinetuningTask.state_dict writes it), in place of fairseq's pickled object.
DICTIONARY_STATE_KEY = "__fairseq_dictionary__"


def to_plain(obj: Any) -> Any:
    """DictConfig / Namespace / enums / tuples -> plain python containers (weights_only-safe)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return to_plain(OmegaConf.to_container(obj, resolve=True, enum_to_str=True))
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, argparse.Namespace):
        return to_plain(vars(obj))
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "value") and isinstance(obj.value, (str, int)):  # Enum
        return obj.value
    return str(obj)


def checkpoint_model_cfg(state: Mapping[str, Any]) -> dict[str, Any]:
    """The model section of a fairseq checkpoint's hydra ``cfg`` or legacy ``args``, as a dict."""
    if state.get("cfg") is not None:
        cfg = to_plain(state["cfg"])
        model = cfg.get("model")
        if isinstance(model, dict):
            return model
    if state.get("args") is not None:
        args = to_plain(state["args"])
        return dict(args, _name=args.get("arch", args.get("_name")))
    raise CheckpointError("checkpoint has neither a hydra 'cfg' with a model section nor legacy 'args'")


def save_checkpoint_atomic(state: Mapping[str, Any], path: str) -> None:
    """torch.save to a temp file beside ``path`` and rename: never a half-written file."""
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


# ---- safetensors ----------------------------------------------------------------------------

def safetensors_path(checkpoint_path: str) -> str:
    """``OUT.pt`` -> ``OUT.safetensors`` (any other name gets ``.safetensors`` appended)."""
    return (checkpoint_path[:-3] if checkpoint_path.endswith(".pt") else checkpoint_path) + ".safetensors"


def safetensors_ready(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors as ``safetensors.torch.save_file`` takes them: detached, contiguous, and no
    two sharing storage (it refuses shared or overlapping tensors); copies only where needed."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, value in weights.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"weight {name!r} is a {type(value).__name__}, not a tensor")
        t = value.detach()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if not t.is_contiguous() or (ptr is not None and ptr in seen):
            t = t.contiguous().clone()
            ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None:
            seen.add(ptr)
        out[name] = t
    return out


def save_safetensors_atomic(weights: Mapping[str, torch.Tensor], path: str,
                            metadata: Mapping[str, str] | None = None) -> None:
    """The weights as a ``.safetensors`` file (atomic, umask's usual mode)."""
    from safetensors.torch import save_file

    tensors = safetensors_ready(weights)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)
