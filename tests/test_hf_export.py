"""Export to transformers' Wav2Vec2ForCTC: same logits (max abs diff <= 1e-4, fp32, eval)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from test_conversion_ctc import audio, letter_dictionary, save_fairseq_wav2vec2

from w2v2_plugin.interop.hf_export import HfExportError, export_to_hf, hf_vocab
from w2v2_plugin.models.ctc import W2v2Ctc, W2v2CtcConfig

transformers = pytest.importorskip("transformers")
TOL = 1e-4


def tiny_ctc(tmp_path, **arch) -> W2v2Ctc:
    pre = save_fairseq_wav2vec2(tmp_path / "pre.pt", **arch)
    normalize = arch.get("extractor_mode") == "layer_norm"
    model = W2v2Ctc.build_model(W2v2CtcConfig(w2v_path=str(pre), normalize=normalize),
                                SimpleNamespace(target_dictionary=letter_dictionary()))
    with torch.no_grad():
        model.w2v_encoder.proj.bias.normal_(0, 0.5)
    return model.eval()


@pytest.mark.parametrize("arch", [
    {},  # BASE-like: group norm in the first conv block, post-LN transformer
    {"extractor_mode": "layer_norm", "layer_norm_first": True, "conv_bias": True},  # LARGE-like
])
def test_transformers_gives_the_same_logits(tmp_path, arch):
    model = tiny_ctc(tmp_path, **arch)
    res = export_to_hf(model, letter_dictionary(), str(tmp_path / "hf"))
    assert res.vocab_size == len(letter_dictionary()) and res.layers == 3
    for name in ("config.json", "model.safetensors", "vocab.json", "preprocessor_config.json",
                 "tokenizer_config.json"):
        assert (tmp_path / "hf" / name).is_file(), name
    hf = transformers.Wav2Vec2ForCTC.from_pretrained(str(tmp_path / "hf")).eval()
    x, pm = audio()
    with torch.no_grad():
        ours = model(source=x, padding_mask=pm)
        theirs = hf(x, attention_mask=(~pm).long()).logits  # (B, T, V)
    frames = ours["padding_mask"]  # (B, T), True on padding: compare real frames only
    ours_bt = ours["encoder_out"].transpose(0, 1)
    assert theirs.shape == ours_bt.shape
    diff = float((theirs - ours_bt)[~frames].abs().max())
    assert diff <= TOL, diff


def test_vocab_and_processor_decode(tmp_path):
    d = letter_dictionary()
    vocab = hf_vocab(d)
    assert vocab["<pad>"] == 0 and vocab["<s>"] == 1 and vocab["|"] == d.index("|")
    model = tiny_ctc(tmp_path)
    export_to_hf(model, d, str(tmp_path / "hf"))
    proc = transformers.Wav2Vec2Processor.from_pretrained(str(tmp_path / "hf"))
    ids = [d.index(c) for c in "HH|E|"] + [0] + [d.index(c) for c in "LL"] + [0, d.index("L")]
    assert proc.batch_decode(torch.tensor([ids]))[0] == "H E LL"  # blanks split repeats


def test_refuses_non_empty_directory_and_wrong_dictionary(tmp_path):
    model = tiny_ctc(tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(HfExportError, match="not empty"):
        export_to_hf(model, letter_dictionary(), str(tmp_path / "busy"))
    small = letter_dictionary()
    small.add_symbol("@")
    with pytest.raises(HfExportError, match="dictionary has"):
        export_to_hf(model, small, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
