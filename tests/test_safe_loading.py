"""Loading a checkpoint never runs code from it (unless the user opts in for a trusted file).

A planted checkpoint -- a valid fairseq/plugin checkpoint plus one object whose unpickling
runs a shell command that writes a marker file -- must be refused, in one line naming the
file, the global and the opt-in, by every entry point: ``w2v2-convert`` (also ``--to-hf``),
``w2v2-infer --path``, the HF export and ``model.w2v_path`` of fine-tuning (the loader the
fine-tuning task's model build uses); the marker must never appear. With the opt-in
(``--trust-checkpoint`` / ``model.trust_checkpoint=true``) the file loads (and, being trusted,
runs its pickle). Checkpoints written by fairseq -- hydra and legacy layouts, with the numpy
scalars of old files in both spellings -- load without the opt-in.
"""
from __future__ import annotations

import argparse
import os
import pickle
import shlex
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import write_tone
from test_conversion_ctc import LETTERS, fairseq_ctc, letter_dictionary, save_fairseq_ctc, save_fairseq_wav2vec2

import w2v2_plugin  # noqa: F401
from w2v2_plugin.cli.convert import main as convert_main
from w2v2_plugin.cli.infer import main as infer_main
from w2v2_plugin.interop.checkpoint_io import (
    SAFE_GLOBAL_NAMES,
    UnsafeCheckpointError,
    load_checkpoint_file,
    safe_global_names,
)
from w2v2_plugin.interop.fairseq_ctc import convert_wav2vec_ctc_file
from w2v2_plugin.interop.pretrained import PretrainedModelError
from w2v2_plugin.models.ctc import W2v2Ctc, W2v2CtcConfig


class Payload:
    """Unpickling this runs ``touch MARKER`` (what a malicious file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def plant(src: Path, dst: Path, marker: Path) -> Path:
    state = torch.load(src, weights_only=False)  # the test's own file
    state.setdefault("extra_state", {})["payload"] = Payload(marker)
    torch.save(state, dst)
    assert not marker.exists()  # saving does not run it
    return dst


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("safe")
    marker = tmp / "MARKER"
    d = letter_dictionary()
    pre = save_fairseq_wav2vec2(tmp / "pretrained.pt")
    ref = fairseq_ctc(pre, d)
    ft_hydra = save_fairseq_ctc(ref, d, tmp / "ft_hydra.pt", "hydra")
    ft_legacy = save_fairseq_ctc(ref, d, tmp / "ft_legacy.pt", "legacy")
    plugin_ctc = tmp / "w2v2_ctc.pt"
    convert_wav2vec_ctc_file(str(ft_hydra), str(plugin_ctc))
    (tmp / "dict.ltr.txt").write_text("".join(f"{c} 1\n" for c in LETTERS))
    write_tone(tmp / "audio" / "u0.wav", 0.8)
    return SimpleNamespace(
        tmp=tmp, marker=marker, d=d, pre=pre, ft_hydra=ft_hydra, ft_legacy=ft_legacy, plugin_ctc=plugin_ctc,
        bad_pre=plant(pre, tmp / "bad_pretrained.pt", marker),
        bad_ft=plant(ft_hydra, tmp / "bad_ft_hydra.pt", marker),
        bad_plugin_ctc=plant(plugin_ctc, tmp / "bad_w2v2_ctc.pt", marker))


@pytest.fixture()
def marker(files: SimpleNamespace):
    files.marker.unlink(missing_ok=True)
    yield files.marker
    files.marker.unlink(missing_ok=True)


def _one_refusal_line(err: str, path: Path, opt_in: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0] and "posix.system" in lines[0] and opt_in in lines[0], lines[0]
    assert "Traceback" not in err


def test_the_loader_refuses_and_names_the_global(files: SimpleNamespace, marker: Path) -> None:
    for bad in (files.bad_pre, files.bad_ft, files.bad_plugin_ctc):
        with pytest.raises(UnsafeCheckpointError) as e:
            load_checkpoint_file(bad)
        _one_refusal_line(str(e.value), bad, "--trust-checkpoint")
    # the legacy (non-zip) torch format goes through the same unpickler
    legacy_format = files.tmp / "bad_legacy_format.pt"
    torch.save({"model": {}, "x": Payload(marker)}, legacy_format, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        load_checkpoint_file(legacy_format)
    assert not marker.exists()
    state = load_checkpoint_file(files.bad_pre, trust=True)  # the opt-in: loads, and runs the pickle
    assert "model" in state and marker.exists()


def test_w2v2_convert_refuses_then_trusts(files: SimpleNamespace, marker: Path, capsys) -> None:
    out = files.tmp / "out.pt"
    for bad in (files.bad_pre, files.bad_ft):
        assert convert_main([str(bad), str(out), "--safetensors"]) == 2
        _one_refusal_line(capsys.readouterr().err, bad, "--trust-checkpoint")
        assert not out.exists() and not out.with_suffix(".safetensors").exists()
    assert convert_main([str(files.bad_plugin_ctc), "--to-hf", str(files.tmp / "hf")]) == 2
    _one_refusal_line(capsys.readouterr().err, files.bad_plugin_ctc, "--trust-checkpoint")
    assert not marker.exists() and not (files.tmp / "hf").exists()

    assert convert_main([str(files.bad_ft), str(out), "--trust-checkpoint"]) == 0
    assert "w2v2_ctc" in capsys.readouterr().out and marker.exists()
    torch.load(out, weights_only=True)  # the converted file is plain data: the payload is not carried over


def test_w2v2_infer_refuses_then_trusts(files: SimpleNamespace, marker: Path, capsys) -> None:
    audio = str(files.tmp / "audio")
    for bad in (files.bad_plugin_ctc, files.bad_ft):
        assert infer_main([audio, "--path", str(bad), "--workers", "1", "--quiet", "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("w2v2-infer: error: ")
        _one_refusal_line(err, bad, "--trust-checkpoint")
    assert not marker.exists()
    assert infer_main([audio, "--path", str(files.bad_plugin_ctc), "--trust-checkpoint", "--workers", "1",
                       "--quiet", "--device", "cpu"]) == 0
    assert "1 utterances" in capsys.readouterr().out and marker.exists()


def test_hf_export_refuses(files: SimpleNamespace, marker: Path) -> None:
    pytest.importorskip("transformers")
    from w2v2_plugin.interop.hf_export import HfExportError, export_to_hf

    with pytest.raises(HfExportError, match="posix.system"):
        export_to_hf(str(files.bad_plugin_ctc), None, str(files.tmp / "hf_refused"))
    assert not marker.exists() and not (files.tmp / "hf_refused").exists()


def test_fine_tuning_w2v_path_refuses_then_trusts(files: SimpleNamespace, marker: Path) -> None:
    task = SimpleNamespace(target_dictionary=files.d)
    with pytest.raises(PretrainedModelError) as e:
        W2v2Ctc.build_model(W2v2CtcConfig(w2v_path=str(files.bad_pre)), task)
    msg = str(e.value)
    assert "\n" not in msg and "posix.system" in msg and "model.trust_checkpoint=true" in msg
    assert str(files.bad_pre) in msg and not marker.exists()
    model = W2v2Ctc.build_model(W2v2CtcConfig(w2v_path=str(files.bad_pre), trust_checkpoint=True), task)
    assert model.w2v_encoder.w2v_model.cfg.encoder_layers == 3 and marker.exists()


def test_trust_checkpoint_is_a_hydra_config_field() -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(W2v2CtcConfig)
    assert cfg.trust_checkpoint is False
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(["trust_checkpoint=true"]))
    assert cfg.trust_checkpoint is True


# ---- fairseq-written files load without the opt-in ------------------------------------------

def test_fairseq_layouts_need_only_the_listed_globals(files: SimpleNamespace) -> None:
    """The derivation of the list, kept as a test: the globals fairseq's files need beyond torch's
    defaults (hydra pretraining: none; hydra fine-tuning: Dictionary; legacy: Namespace)."""
    legacy_pre = files.tmp / "legacy_pretrained.pt"
    state = torch.load(files.pre, weights_only=False)
    state["args"] = argparse.Namespace(**state["cfg"]["model"], arch="wav2vec2", task="audio_pretraining",
                                       criterion="wav2vec", sample_rate=16000, normalize=False)
    state["cfg"] = None
    torch.save(state, legacy_pre)
    needed = {
        "hydra pretraining": set(torch.serialization.get_unsafe_globals_in_checkpoint(str(files.pre))),
        "legacy pretraining": set(torch.serialization.get_unsafe_globals_in_checkpoint(str(legacy_pre))),
        "hydra fine-tuned": set(torch.serialization.get_unsafe_globals_in_checkpoint(str(files.ft_hydra))),
        "legacy fine-tuned": set(torch.serialization.get_unsafe_globals_in_checkpoint(str(files.ft_legacy))),
    }
    assert needed == {"hydra pretraining": set(), "legacy pretraining": {"argparse.Namespace"},
                      "hydra fine-tuned": {"fairseq.data.dictionary.Dictionary"},
                      "legacy fine-tuned": {"argparse.Namespace"}}
    for path in (files.pre, legacy_pre, files.ft_hydra, files.ft_legacy, files.plugin_ctc):
        state = load_checkpoint_file(path)
        assert "model" in state
    assert load_checkpoint_file(files.ft_hydra)["task_state"]["target_dictionary"].symbols == files.d.symbols
    assert load_checkpoint_file(files.ft_legacy)["args"].w2v_args.encoder_layers == 3
    # and the plugin's own files need nothing beyond torch's defaults
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(files.plugin_ctc)) == []


class _NumpyOnePickler(pickle._Pickler):  # type: ignore[name-defined]
    """Pickles numpy's ``numpy._core`` globals as numpy < 2 did (``numpy.core``)."""

    def save_global(self, obj, name=None):  # noqa: D401
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core"):
            qualname = name or obj.__qualname__
            self.write(pickle.GLOBAL + f"numpy.core{module[len('numpy._core'):]}\n{qualname}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)


class _NumpyOnePickle:
    Pickler = _NumpyOnePickler


@pytest.mark.parametrize("spelling", ["numpy._core", "numpy.core"])
def test_numpy_scalars_of_old_fairseq_files_load(files: SimpleNamespace, spelling: str) -> None:
    """Older fairseq wrote numpy scalars into extra_state (meters, best score): they load, in
    the spelling of numpy >= 2 and of numpy < 2 files, without importing numpy.core."""
    state = torch.load(files.ft_legacy, weights_only=False)
    scalars = {"best": np.float64(12.5), "val_loss": np.float32(3.25), "num_updates": np.int64(400),
               "flag": np.bool_(True), "count": np.int32(7), "half": np.float16(0.5)}
    state["extra_state"] = {"metrics": {"train": [(10, "loss", "AverageMeter", {"val": np.float64(1.5)})]},
                            **scalars}
    path = files.tmp / f"numpy_{spelling}.pt"
    kwargs = {"pickle_module": _NumpyOnePickle, "pickle_protocol": 2} if spelling == "numpy.core" else {}
    torch.save(state, path, **kwargs)
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    assert f"{spelling}.multiarray.scalar" in unsafe and unsafe <= set(SAFE_GLOBAL_NAMES)
    loaded = load_checkpoint_file(path)
    for k, v in scalars.items():
        assert loaded["extra_state"][k] == v and type(loaded["extra_state"][k]) is type(v)
    assert loaded["extra_state"]["metrics"]["train"][0][3]["val"] == 1.5
    assert torch.equal(loaded["model"]["w2v_encoder.proj.weight"], state["model"]["w2v_encoder.proj.weight"])


def test_the_list_is_scoped_not_process_wide(files: SimpleNamespace) -> None:
    load_checkpoint_file(files.ft_hydra)
    names = safe_global_names()
    process_wide = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}"
                    for g in torch.serialization.get_safe_globals()}
    assert not process_wide & set(names)  # nothing of ours leaked into torch's process-wide list
    with pytest.raises(pickle.UnpicklingError):
        torch.load(files.ft_hydra, weights_only=True)  # a plain torch.load still refuses Dictionary
    assert set(SAFE_GLOBAL_NAMES) <= set(names)
    assert all(n in SAFE_GLOBAL_NAMES or n.startswith("numpy.dtypes.") or n.startswith("numpy.dtype[")
               for n in names)
