"""w2v2-infer end to end on a tiny model: loading, emissions, chunking, outputs, re-decoding.

The tiny model is built by fairseq itself (``wav2vec2`` -> ``wav2vec_ctc``, saved in fairseq's
hydra layout with the pickled dictionary), and converted to a plugin ``w2v2_ctc`` checkpoint
with :mod:`w2v2_plugin.interop.fairseq_ctc`; both files must give fairseq's own log-probs
(max abs difference <= 1e-4, fp32, eval mode). Its weights are random: these tests check the
plumbing, not the accuracy (the LM tests on synthetic emissions check that).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from fairseq.data import Dictionary
from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model
from fairseq.models.wav2vec.wav2vec2_asr import Wav2Vec2CtcConfig, Wav2VecCtc
from helpers import write_tone
from omegaconf import OmegaConf

import w2v2_plugin  # noqa: F401
from w2v2_plugin.cli.infer import main as infer_main
from w2v2_plugin.inference.emissions import ChunkConfig, load_acoustic_model
from w2v2_plugin.interop.fairseq_ctc import convert_wav2vec_ctc_file
from w2v2_plugin.models.conv_geometry import parse_conv_layers

LETTERS = "|ETAOINSHRDLUCMWFGYPBVKXJQZ'"
# wav2vec 2.0's stride (320 samples = 20 ms) with 32 channels and 2 small transformer layers
TINY = dict(conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2",
            encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2,
            conv_pos=16, conv_pos_groups=4, final_dim=16, latent_vars=8, latent_groups=2)
HISTORY = [{"criterion_name": "CtcCriterion", "optimizer_name": "Adam", "lr_scheduler_state": {}, "num_updates": 0}]
TOL = 1e-4


def _save_pretrained(path: Path, **overrides: object) -> Path:
    torch.manual_seed(0)
    fcfg = Wav2Vec2Config(**{**TINY, **overrides})
    model = Wav2Vec2Model(fcfg)
    cfg = {"_name": None, "common": {"tpu": False, "seed": 1},
           "model": dict(OmegaConf.to_container(OmegaConf.structured(fcfg), enum_to_str=True), _name="wav2vec2"),
           "task": {"_name": "audio_pretraining", "data": str(path.parent), "sample_rate": 16000, "normalize": False}}
    torch.save({"cfg": cfg, "model": model.state_dict(), "args": None, "optimizer_history": HISTORY,
                "extra_state": {}, "last_optimizer_state": None}, path)
    return path


def _fairseq_ctc(pretrained: Path, d: Dictionary) -> Wav2VecCtc:
    ccfg = Wav2Vec2CtcConfig(w2v_path=str(pretrained), data=str(pretrained.parent), normalize=False,
                             ddp_backend="legacy_ddp")
    model = Wav2VecCtc.build_model(ccfg, SimpleNamespace(target_dictionary=d))
    with torch.no_grad():  # a head that does not always answer blank, so hypotheses are non-empty
        model.w2v_encoder.proj.weight.normal_(0, 1.0)
        model.w2v_encoder.proj.bias.normal_(0, 0.5)
    return model.eval()


def _save_fairseq_ctc(model: Wav2VecCtc, d: Dictionary, path: Path) -> Path:
    cfg = model.cfg
    model_cfg = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=False, enum_to_str=True)
    model_cfg.update(_name="wav2vec_ctc", normalize=False, data=cfg.data, ddp_backend="legacy_ddp",
                     w2v_args=OmegaConf.to_container(cfg.w2v_args, resolve=True, enum_to_str=True))
    state = {"cfg": {"_name": None, "common": {"tpu": False, "seed": 1}, "model": model_cfg,
                     "task": {"_name": "audio_finetuning", "data": str(path.parent), "labels": "ltr",
                              "normalize": False}},
             "args": None, "task_state": {"target_dictionary": d}, "model": model.state_dict(),
             "optimizer_history": HISTORY, "extra_state": {}, "last_optimizer_state": None}
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("infer")
    d = Dictionary()
    for c in LETTERS:
        d.add_symbol(c)
    pre = _save_pretrained(tmp / "pretrained.pt")
    ref_model = _fairseq_ctc(pre, d)
    fairseq_ckpt = _save_fairseq_ctc(ref_model, d, tmp / "fairseq_ctc.pt")
    plugin_ckpt = tmp / "w2v2_ctc.pt"
    convert_wav2vec_ctc_file(str(fairseq_ckpt), str(plugin_ckpt))
    # a manifest split with references
    data = tmp / "data"
    audio = data / "audio"
    refs = ["THE CAT", "A DOG SAT", "ON THE MAT"]
    lines = [str(audio)]
    for i, secs in enumerate((1.2, 0.7, 2.1)):
        write_tone(audio / f"u{i}.wav", secs, seed=i)
        lines.append(f"u{i}.wav\t{int(round(secs * 16000))}")
    (data / "test.tsv").write_text("\n".join(lines) + "\n")
    (data / "test.wrd").write_text("\n".join(refs) + "\n")
    (data / "dict.ltr.txt").write_text("".join(f"{c} 1\n" for c in LETTERS))
    return SimpleNamespace(tmp=tmp, d=d, ref=ref_model, fairseq=fairseq_ckpt, plugin=plugin_ckpt, data=data,
                           pretrained=pre)


def _fairseq_log_probs(model: Wav2VecCtc, wav: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        x = torch.from_numpy(wav)[None]
        out = model(source=x, padding_mask=torch.zeros_like(x, dtype=torch.bool))
        return model.get_normalized_probs(out, log_probs=True)[:, 0].numpy()  # (frame, unit)


@pytest.mark.parametrize("which", ["plugin", "fairseq"])
def test_loaded_model_gives_fairseq_emissions(tiny: SimpleNamespace, which: str) -> None:
    am = load_acoustic_model(getattr(tiny, which))
    assert list(am.units.symbols) == list(tiny.d.symbols)
    assert am.geometry == (320, 400) and am.frame_seconds == 0.02
    wav = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    ours, ref = am.emissions(wav), _fairseq_log_probs(tiny.ref, wav)
    assert ours.shape == ref.shape == (am.geometry.n_frames(16000), len(tiny.d))
    assert np.abs(ours - ref).max() <= TOL


def test_batching_only_where_padding_cannot_change_emissions(tiny: SimpleNamespace) -> None:
    from w2v2_plugin.decoding.units import UnitDictionary
    from w2v2_plugin.inference.emissions import AcousticModel

    # BASE-style feature encoder: group norm over time sees the padding -> one utterance per batch
    assert load_acoustic_model(tiny.plugin).batchable is False
    torch.manual_seed(0)
    units = UnitDictionary.from_units(list(LETTERS))
    am = AcousticModel(LocalCtc(len(units)), units)
    assert am.batchable
    rng = np.random.default_rng(1)
    wavs = [rng.standard_normal(n).astype(np.float32) for n in (16000, 9000, 12345)]
    for w, b in zip(wavs, am.forward_batch(wavs)):
        single = am.forward_batch([w])[0]
        assert b.shape == single.shape == (am.geometry.n_frames(len(w)), len(units))
        assert np.abs(b - single).max() < 1e-5


class LocalCtc(torch.nn.Module):
    """A CTC model whose frames see only local audio (conv stack, no attention)."""

    def __init__(self, n_units: int) -> None:
        super().__init__()
        self.cfg = SimpleNamespace(conv_feature_layers=TINY["conv_feature_layers"])
        layers, dim = [], 1
        for out, k, s in parse_conv_layers(TINY["conv_feature_layers"]):
            layers += [torch.nn.Conv1d(dim, out, k, s), torch.nn.GELU()]
            dim = out
        self.conv = torch.nn.Sequential(*layers)
        self.proj = torch.nn.Linear(dim, n_units)

    def forward(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None) -> dict:
        x = self.conv(source[:, None]).transpose(1, 2)  # (batch, frame, dim)
        return {"encoder_out": self.proj(x).transpose(0, 1), "padding_mask": None}  # (frame, batch, unit)

    def get_normalized_probs(self, net_out: dict, log_probs: bool) -> torch.Tensor:
        return torch.log_softmax(net_out["encoder_out"], dim=-1)


def test_chunked_stitching_is_exact_for_a_local_model() -> None:
    from w2v2_plugin.decoding.units import UnitDictionary
    from w2v2_plugin.inference.emissions import AcousticModel

    torch.manual_seed(0)
    units = UnitDictionary.from_units(list(LETTERS))
    am = AcousticModel(LocalCtc(len(units)), units)
    wav = np.random.default_rng(2).standard_normal(16000 * 7 + 123).astype(np.float32)
    whole = am.forward_batch([wav])[0]
    for chunk in (ChunkConfig(1.0, 0.2), ChunkConfig(2.5, 0.5), ChunkConfig(0.5, 0.0)):
        stitched = am.chunked_emissions(wav, chunk, max_samples=50_000)
        assert stitched.shape == whole.shape
        assert np.abs(stitched - whole).max() < 1e-4, chunk


def test_chunked_and_whole_inference_agree_on_long_input(tmp_path: Path) -> None:
    """40 s through a LARGE-style tiny model (per-frame layer norm in the feature encoder),
    whole vs 8 s chunks with 2 s of context: the attention sees different context, nothing
    else differs. Measured: argmax agreement 99.95%, max total-variation distance 0.002
    (0.74 without context). BASE-style encoders group-normalise over the whole input, so
    their chunks differ more (~91% argmax agreement on this random model)."""
    d = Dictionary()
    for c in LETTERS:
        d.add_symbol(c)
    pre = _save_pretrained(tmp_path / "pretrained.pt", extractor_mode="layer_norm", layer_norm_first=True)
    convert_wav2vec_ctc_file(str(_save_fairseq_ctc(_fairseq_ctc(pre, d), d, tmp_path / "f.pt")),
                             str(tmp_path / "large.pt"))
    am = load_acoustic_model(tmp_path / "large.pt")
    wav = np.concatenate([sf.read(str(write_tone(tmp_path / f"long{i}.wav", 10.0, seed=10 + i)))[0]
                          for i in range(4)]).astype(np.float32)  # 40 s
    whole = am.forward_batch([am.prepare(wav)])[0]
    tv = {}
    for context in (0.0, 2.0):
        chunked = am.emissions(wav, ChunkConfig(chunk_seconds=8.0, context_seconds=context))
        assert chunked.shape == whole.shape == (am.geometry.n_frames(len(wav)), len(d))
        tv[context] = 0.5 * np.abs(np.exp(chunked) - np.exp(whole)).sum(axis=1)  # (frame,)
        agree = float((chunked.argmax(1) == whole.argmax(1)).mean())
    assert agree >= 0.995 and tv[2.0].max() < 0.01, (agree, tv[2.0].max())
    assert tv[0.0].max() > tv[2.0].max()  # the context is what makes the chunks agree


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_manifest_viterbi_then_redecode_cached(tiny: SimpleNamespace, tmp_path: Path, capsys) -> None:
    out, em = tmp_path / "out", tmp_path / "em"
    rc = infer_main([str(tiny.data), "--subset", "test", "--path", str(tiny.plugin), "--results-path", str(out),
                     "--save-emissions", str(em), "--workers", "1", "--quiet"])
    assert rc == 0
    recs = _read_jsonl(out / "hypos.test.jsonl")
    summary = json.loads((out / "summary.test.json").read_text())
    assert [r["id"] for r in recs] == ["u0", "u1", "u2"] and recs[1]["ref"] == "A DOG SAT"
    assert summary["utterances"] == 3 and summary["audio_hours"] == pytest.approx(4.0 / 3600, rel=1e-3)
    assert summary["word_errors"] == sum(r["word_errors"] for r in recs)
    assert summary["wer"] == pytest.approx(100 * summary["word_errors"] / 8, abs=1e-3)
    assert summary["rtf"] > 0 and summary["cer"] is not None
    for r in recs:
        assert len(r["nbest"]) == 1 and r["nbest"][0]["hyp"] == r["hyp"]
        assert " ".join(w["word"] for w in r["words"]) == r["hyp"]
        assert all(0 <= w["start"] < w["end"] <= r["seconds"] + 0.02 for w in r["words"])
    assert "utterances" in capsys.readouterr().out
    # re-decode the cached emissions: no checkpoint needed, same Viterbi output, 2 workers
    out2 = tmp_path / "out2"
    assert infer_main(["--emissions", str(em), "--results-path", str(out2), "--workers", "2", "--quiet"]) == 0
    # outputs keep the split's name, recorded in the cache (not "emissions")
    assert json.loads((em / "meta.json").read_text())["split"] == "test"
    assert sorted(p.name for p in out2.iterdir()) == ["hypos.test.jsonl", "summary.test.json"]
    assert [r["hyp"] for r in _read_jsonl(out2 / "hypos.test.jsonl")] == [r["hyp"] for r in recs]
    # and lexicon-free beam search with an n-best list
    out3 = tmp_path / "out3"
    assert infer_main(["--emissions", str(em), "--results-path", str(out3), "--decoder", "lexfree", "--nbest", "3",
                       "--beam", "10", "--workers", "2", "--quiet"]) == 0
    recs3 = _read_jsonl(out3 / "hypos.test.jsonl")
    assert all(1 <= len(r["nbest"]) <= 3 for r in recs3)
    assert all(r["nbest"][0]["score"] >= r["nbest"][-1]["score"] for r in recs3)


def test_cli_plain_audio_and_fairseq_checkpoint(tiny: SimpleNamespace, capsys) -> None:
    rc = infer_main([str(tiny.data / "audio"), "--path", str(tiny.fairseq), "--workers", "1", "--quiet"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("\t")[0].rsplit("/", 1)[-1] for ln in lines[:3]] == ["u0", "u1", "u2"]
    assert "3 utterances" in lines[-1] and "no references" in lines[-1]


def test_cli_errors_are_one_line(tiny: SimpleNamespace, tmp_path: Path, capsys) -> None:
    def err(argv: list[str]) -> str:
        assert infer_main(argv + ["--quiet", "--workers", "1"]) == 2
        msg = capsys.readouterr().err.strip()
        assert msg.startswith("w2v2-infer: error: ") and "\n" not in msg
        return msg

    assert "manifest not found" in err([str(tiny.data), "--subset", "dev", "--path", str(tiny.plugin)])
    assert "checkpoint not found" in err([str(tiny.data), "--subset", "test", "--path", str(tmp_path / "x.pt")])
    assert "a pretraining checkpoint (model wav2vec2)" in err([str(tiny.data), "--subset", "test", "--path",
                                                               str(tiny.pretrained)])
    sf.write(str(tmp_path / "8k.wav"), np.zeros(8000, np.float32), 8000)
    assert "sample rate 8000 Hz" in err([str(tmp_path / "8k.wav"), "--path", str(tiny.plugin)])
    assert "not a finished emission cache" in err(["--emissions", str(tmp_path)])
    assert "--decoder viterbi" in err(["--emissions", str(tmp_path), "--lm", "x.arpa"])
    # a bad LM is reported before the acoustic model runs: no emissions are written
    (tmp_path / "bad.arpa").write_text("not an lm\n")
    (tmp_path / "lex.txt").write_text("CAT\tC A T |\n")
    msg = err([str(tiny.data), "--subset", "test", "--path", str(tiny.plugin), "--decoder", "kenlm", "--lm",
               str(tmp_path / "bad.arpa"), "--lexicon", str(tmp_path / "lex.txt"), "--save-emissions",
               str(tmp_path / "em")])
    assert "bad.arpa: not an ARPA or KenLM binary" in msg and not (tmp_path / "em").exists()


def test_manifest_references_from_ltr_and_line_count_check(tmp_path: Path) -> None:
    from w2v2_plugin.inference.inputs import from_manifest

    write_tone(tmp_path / "a.wav", 0.2)
    write_tone(tmp_path / "b.wav", 0.3)
    (tmp_path / "dev.tsv").write_text(f"{tmp_path}\na.wav\t3200\nb.wav\t4800\n")
    (tmp_path / "dev.ltr").write_text("T H E | C A T |\nA |\n")
    utts = from_manifest(tmp_path, "dev")
    assert [(u.id, u.ref, u.n_samples) for u in utts] == [("a", "THE CAT", 3200), ("b", "A", 4800)]
    (tmp_path / "dev.wrd").write_text("ONLY ONE LINE\n")  # .wrd wins over .ltr, and must match the manifest
    with pytest.raises(Exception, match=r"dev.wrd: 1 transcript lines for 2 utterances"):
        from_manifest(tmp_path, "dev")
