"""Decoders on synthetic emissions built from known text (no acoustic model needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from testing_support.synthetic import letter_units, synthesize
from w2v2_plugin.decoding import DecoderConfig, DecodingError, UnitDictionary, build_decoder
from w2v2_plugin.decoding.timestamps import WordSpan, word_spans
from w2v2_plugin.lm.kenlm_tools import have_kenlm_tools
from w2v2_plugin.lm.lm_build import LMBuildConfig, build_lm

LETTERS = "E T A O N I H S R D L U M W C F G Y P B V K ' X J Q Z".split()
CORPUS = """the cat sat on the mat
the dog sat on the mat
a hat on a cat
the cat sat on the mat
the dog ate the hat
a dog and a cat sat on the mat
"""
needs_kenlm = pytest.mark.skipif(not have_kenlm_tools(), reason="lmplz/build_binary missing: run `make kenlm`")


def write_dict(path: Path, symbols: list[str]) -> Path:
    path.write_text("".join(f"{s} {1000 - i}\n" for i, s in enumerate(symbols)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def letter_setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("letters")
    dict_path = write_dict(d / "dict.ltr.txt", ["|"] + LETTERS)
    (d / "corpus.txt").write_text(CORPUS * 3)
    out: dict = {"dir": d, "dict": dict_path, "units": UnitDictionary.load(dict_path)}
    if have_kenlm_tools():
        out["lm"] = build_lm(LMBuildConfig(corpus=str(d / "corpus.txt"), out=str(d / "lm"), order=3,
                                           dict=str(dict_path)), progress=False)
        out["unit_lm"] = build_lm(LMBuildConfig(corpus=str(d / "corpus.txt"), out=str(d / "lm"), order=6,
                                                dict=str(dict_path), unit_lm=True), progress=False)
    return out


def confused(units: UnitDictionary, text: str, word_idx: int, letter_idx: int, wrong: str, seed: int = 0):
    """Emissions for ``text`` where letter ``letter_idx`` of word ``word_idx`` looks like ``wrong``."""
    seq = letter_units(text, units)
    words = text.split()
    pos = sum(len(w) + 1 for w in words[:word_idx]) + letter_idx
    return synthesize(units, seq, np.random.default_rng(seed), confusions={pos: units.index(wrong)})


# ---- units -------------------------------------------------------------------------------
def test_unit_dictionary_matches_fairseq(tmp_path: Path) -> None:
    from fairseq.data import Dictionary

    p = write_dict(tmp_path / "dict.ltr.txt", ["|"] + LETTERS)
    ours, theirs = UnitDictionary.load(p), Dictionary.load(str(p))
    assert list(ours.symbols) == list(theirs.symbols)
    assert (ours.blank, ours.eos, ours.unk) == (theirs.bos(), theirs.eos(), theirs.unk())
    assert ours.silence == theirs.index("|") and ours.kind == "letter"


def test_unit_dictionary_bad_line_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "dict.ltr.txt"
    p.write_text("| 10\nA 5\nB\n")
    with pytest.raises(DecodingError, match=r"dict.ltr.txt:3: expected 'SYMBOL COUNT'"):
        UnitDictionary.load(p)
    p.write_text("| 10\nA 5\nA 4\n")
    with pytest.raises(DecodingError, match=r"dict.ltr.txt:3: duplicate unit 'A'"):
        UnitDictionary.load(p)


# ---- viterbi and timestamps ------------------------------------------------------------------
def test_viterbi_exact_on_clean_emissions(letter_setup: dict) -> None:
    units = letter_setup["units"]
    text = "THE DOG ATE THE HAT"
    utt = synthesize(units, letter_units(text, units), np.random.default_rng(1))
    [hyp] = build_decoder(DecoderConfig(type="viterbi"), units).decode(utt.emissions)
    assert hyp.text == text
    assert list(hyp.frames) == utt.frames.tolist()
    assert hyp.words == tuple(utt.spans)
    assert hyp.score == pytest.approx(float(utt.emissions.max(axis=1).sum()), rel=1e-6)


def test_word_spans_on_hand_made_alignment() -> None:
    units = UnitDictionary.from_units(["|", "A", "B", "C"])
    b, bar, a, bb, c = units.blank, units.index("|"), units.index("A"), units.index("B"), units.index("C")
    # frames: _ A A _ B | | _ C C _ A | _   ->  "AB" frames 1-4 (B ends at 5), "CA" frames 8-11
    frames = [b, a, a, b, bb, bar, bar, b, c, c, b, a, bar, b]
    spans = word_spans(frames, units)
    assert spans == [WordSpan("AB", 1, 5), WordSpan("CA", 8, 12)]
    assert spans[1].seconds(0.02, offset=1.0) == (1.16, 1.24)
    # a doubled letter needs a blank between its two emissions
    assert word_spans([a, b, a, bar], units) == [WordSpan("AA", 0, 3)]


def test_emission_shape_mismatch_is_one_clear_error(letter_setup: dict) -> None:
    units = letter_setup["units"]
    with pytest.raises(DecodingError, match="do not match"):
        build_decoder(DecoderConfig(), units).decode(np.zeros((5, len(units) + 1), np.float32))


# ---- lexicon-free ---------------------------------------------------------------------------
def test_lexfree_without_lm_recovers_clean_text(letter_setup: dict) -> None:
    units = letter_setup["units"]
    text = "A DOG AND A CAT"
    utt = synthesize(units, letter_units(text, units), np.random.default_rng(2))
    hyps = build_decoder(DecoderConfig(type="lexfree", beam=20, nbest=3), units).decode(utt.emissions)
    assert hyps[0].text == text and hyps[0].words == tuple(utt.spans)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    assert len({h.text for h in hyps}) == len(hyps) == 3


@needs_kenlm
def test_lexfree_unit_lm_fixes_a_non_word(letter_setup: dict) -> None:
    units = letter_setup["units"]
    utt = confused(units, "THE CAT SAT ON THE MAT", 1, 0, "X")  # acoustics say "XAT"
    assert build_decoder(DecoderConfig(), units).decode(utt.emissions)[0].text != "THE CAT SAT ON THE MAT"
    cfg = DecoderConfig(type="lexfree", lm=str(letter_setup["unit_lm"].binary), lm_weight=2.0, beam=50)
    assert build_decoder(cfg, units).decode(utt.emissions)[0].text == "THE CAT SAT ON THE MAT"


# ---- kenlm (lexicon + word LM) ------------------------------------------------------------------
@needs_kenlm
@pytest.mark.parametrize("lm_file", ["arpa", "binary"])
def test_kenlm_exact_on_clean_emissions(letter_setup: dict, lm_file: str) -> None:
    units, lm = letter_setup["units"], letter_setup["lm"]
    text = "A DOG AND A CAT SAT ON THE MAT"
    utt = synthesize(units, letter_units(text, units), np.random.default_rng(3))
    cfg = DecoderConfig(type="kenlm", lm=str(getattr(lm, lm_file)), lexicon=str(lm.lexicon), beam=50, nbest=2)
    hyps = build_decoder(cfg, units).decode(utt.emissions)
    assert hyps[0].text == text and hyps[0].words == tuple(utt.spans)
    assert hyps[0].lm_score < 0 and hyps[0].score > hyps[1].score


@needs_kenlm
def test_kenlm_fixes_planted_confusion_that_viterbi_gets_wrong(letter_setup: dict) -> None:
    units, lm = letter_setup["units"], letter_setup["lm"]
    ref = "THE CAT SAT ON THE MAT"
    utt = confused(units, ref, 5, 0, "H")  # acoustics prefer "HAT", also a lexicon word
    viterbi = build_decoder(DecoderConfig(), units).decode(utt.emissions)[0]
    assert viterbi.text != ref and viterbi.text.endswith("HAT")
    no_lm = DecoderConfig(type="kenlm", lm=str(lm.binary), lexicon=str(lm.lexicon), lm_weight=0.0, word_score=0.0)
    assert build_decoder(no_lm, units).decode(utt.emissions)[0].text == "THE CAT SAT ON THE HAT"
    with_lm = DecoderConfig(type="kenlm", lm=str(lm.binary), lexicon=str(lm.lexicon), lm_weight=2.0, word_score=0.0)
    best = build_decoder(with_lm, units).decode(utt.emissions)[0]
    assert best.text == ref
    assert [w.word for w in best.words] == ref.split()


@needs_kenlm
def test_sentencepiece_units(tmp_path: Path) -> None:
    import sentencepiece as spm

    text_file = tmp_path / "text.txt"
    text_file.write_text(CORPUS.upper() * 20)
    spm.SentencePieceTrainer.train(input=str(text_file), model_prefix=str(tmp_path / "sp"), vocab_size=30, hard_vocab_limit=False,
                                   model_type="unigram", character_coverage=1.0, bos_id=-1, eos_id=-1,
                                   unk_id=0, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if i != sp.unk_id()]
    dict_path = write_dict(tmp_path / "dict.sp.txt", pieces)
    units = UnitDictionary.load(dict_path)
    assert units.kind == "sentencepiece"
    (tmp_path / "corpus.txt").write_text(CORPUS * 3)
    lm = build_lm(LMBuildConfig(corpus=str(tmp_path / "corpus.txt"), out=str(tmp_path / "lm"), order=3,
                                dict=str(dict_path), spm_model=str(tmp_path / "sp.model")), progress=False)
    ref = "THE DOG SAT ON THE MAT"
    seq = [units.index(p) for p in sp.encode(ref, out_type=str)]
    assert units.unk not in seq
    utt = synthesize(units, seq, np.random.default_rng(4))
    assert [s.word for s in utt.spans] == ref.split()
    assert build_decoder(DecoderConfig(), units).decode(utt.emissions)[0].text == ref
    cfg = DecoderConfig(type="kenlm", lm=str(lm.binary), lexicon=str(lm.lexicon))
    hyp = build_decoder(cfg, units).decode(utt.emissions)[0]
    assert hyp.text == ref and hyp.words == tuple(utt.spans)


@needs_kenlm
@pytest.mark.parametrize("kind", ["kenlm", "lexfree"])
def test_streaming_beam_search_on_long_input_matches_offline(letter_setup: dict, kind: str) -> None:
    """Inputs above ``stream_after`` frames are decoded in blocks with a bounded history."""
    units = letter_setup["units"]
    sentences = [s for s in CORPUS.upper().splitlines() if s]
    text = " ".join(sentences * 8)
    seq = letter_units(text, units)
    words = text.split()
    # plant a confusion in every 7th word's first letter ("C" -> "K" etc. never spells a lexicon word)
    pos, conf = 0, {}
    for i, w in enumerate(words):
        if i % 7 == 3:
            conf[pos] = units.index("K")
        pos += len(w) + 1
    utt = synthesize(units, seq, np.random.default_rng(5), confusions=conf)
    assert utt.emissions.shape[0] > 1500
    if kind == "kenlm":
        lm = letter_setup["lm"]
        base = DecoderConfig(type="kenlm", lm=str(lm.binary), lexicon=str(lm.lexicon), beam=30, word_score=0.0)
    else:
        base = DecoderConfig(type="lexfree", lm=str(letter_setup["unit_lm"].binary), beam=30)
    offline = build_decoder(base, units).decode(utt.emissions)[0]
    cfg = DecoderConfig(**{**base.to_dict(), "stream_after": 500, "stream_lookback": 100})
    streamed = build_decoder(cfg, units).decode(utt.emissions)
    assert len(streamed) == 1 and len(streamed[0].frames) == utt.emissions.shape[0]
    assert streamed[0].text == offline.text
    assert streamed[0].frames == offline.frames and streamed[0].score == pytest.approx(offline.score, rel=1e-5)
    if kind == "kenlm":
        assert offline.text == text
