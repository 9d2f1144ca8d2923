"""``w2v2-convert --safetensors``: the converted weights also as OUT.safetensors, round-trip exact."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from test_conversion_ctc import fairseq_ctc, letter_dictionary, save_fairseq_ctc, save_fairseq_wav2vec2

from w2v2_plugin.cli.convert import main as convert_main
from w2v2_plugin.interop.checkpoint_io import safetensors_path, save_safetensors_atomic


def assert_same_tensors(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("kind", ["pretraining", "fine-tuned"])
def test_convert_writes_safetensors_beside_the_pt(tmp_path: Path, kind: str, capsys) -> None:
    d = letter_dictionary()
    src = save_fairseq_wav2vec2(tmp_path / "pretrained.pt")
    if kind == "fine-tuned":
        src = save_fairseq_ctc(fairseq_ctc(src, d), d, tmp_path / "ft.pt")
    out = tmp_path / "out" / "model.pt"
    assert convert_main([str(src), str(out), "--safetensors"]) == 0
    printed = capsys.readouterr().out
    st = tmp_path / "out" / "model.safetensors"
    assert str(st) in printed and st.is_file()
    weights = torch.load(out, weights_only=True)["model"]
    assert_same_tensors(weights, load_file(str(st)))
    with safe_open(str(st), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and meta["model"] == ("w2v2_ctc" if kind == "fine-tuned" else "w2v2")
    assert meta["checkpoint"] == "model.pt"


def test_shared_and_strided_tensors_round_trip(tmp_path: Path) -> None:
    """safetensors refuses tensors sharing storage and needs contiguous data: the writer copies
    exactly those, and every tensor comes back with its name, dtype and values."""
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    weights = {
        "base": base,
        "rows": base[1:3],            # a view sharing base's storage
        "cols": base[:, ::2],         # shared and non-contiguous
        "transposed": base.t(),       # shared, non-contiguous
        "q": torch.randn(3, 2).chunk(3)[0],  # a slice of a tensor not otherwise saved
        "half": torch.randn(5).half(),
        "bf16": torch.randn(5).bfloat16(),
        "index": torch.arange(7),     # int64
        "flag": torch.tensor([True, False]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "param": torch.nn.Parameter(torch.ones(2, 2)),
    }
    before = {k: v.detach().clone() for k, v in weights.items()}
    path = tmp_path / "w.safetensors"
    save_safetensors_atomic(weights, str(path), {"format": "pt"})
    back = load_file(str(path))
    assert_same_tensors({k: v.detach() for k, v in weights.items()}, back)
    assert_same_tensors(before, {k: v.detach() for k, v in weights.items()})  # inputs untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_safetensors_path_and_flag_needs_output(tmp_path: Path, capsys) -> None:
    assert safetensors_path("a/b/model.pt") == "a/b/model.safetensors"
    assert safetensors_path("a/model.ckpt") == "a/model.ckpt.safetensors"
    with pytest.raises(SystemExit) as e:
        convert_main([str(tmp_path / "x.pt"), "--to-hf", str(tmp_path / "hf"), "--safetensors"])
    assert e.value.code == 2 and "--safetensors" in capsys.readouterr().err
