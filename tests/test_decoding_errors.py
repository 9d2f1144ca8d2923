"""Every lexicon / LM / dictionary mismatch is one clear DecodingError before KenLM runs."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from w2v2_plugin.decoding import DecoderConfig, DecodingError, UnitDictionary, build_decoder
from w2v2_plugin.decoding.lm_files import KENLM_MAX_ORDER, inspect_lm
from w2v2_plugin.lm.kenlm_tools import find_kenlm_tools, have_kenlm_tools, run_build_binary

LETTERS = list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")


def hand_arpa(path: Path, sentence: list[str], order: int) -> Path:
    """A small, well-formed ARPA of any order (all n-grams of one sentence, made-up scores)."""
    toks = ["<s>", *sentence, "</s>"]
    grams = {n: sorted({tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}) for n in range(1, order + 1)}
    grams[1] = sorted(set(grams[1]) | {("<unk>",)})
    lines = ["\\data\\", *[f"ngram {n}={len(g)}" for n, g in grams.items()], ""]
    for n, g in grams.items():
        lines.append(f"\\{n}-grams:")
        for gram in g:
            prob = "-99" if gram == ("<s>",) else "-0.5"
            backoff = "\t0" if n < order and gram[-1] != "</s>" else ""
            lines.append(f"{prob}\t{' '.join(gram)}{backoff}")
        lines.append("")
    lines.append("\\end\\")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def units(tmp_path: Path) -> UnitDictionary:
    p = tmp_path / "dict.ltr.txt"
    p.write_text("".join(f"{s} 1\n" for s in ["|", *LETTERS]))
    return UnitDictionary.load(p)


@pytest.fixture()
def good(tmp_path: Path) -> dict:
    lm = hand_arpa(tmp_path / "3gram.arpa", ["THE", "CAT", "SAT"], 3)
    lex = tmp_path / "lexicon.txt"
    lex.write_text("THE\tT H E |\nCAT\tC A T |\nSAT\tS A T |\n")
    return {"lm": str(lm), "lexicon": str(lex)}


def kenlm(units: UnitDictionary, **kw: object):
    return build_decoder(DecoderConfig(type="kenlm", **kw), units)  # type: ignore[arg-type]


def test_the_good_inputs_work(units: UnitDictionary, good: dict) -> None:
    dec = kenlm(units, **good)
    em = np.log(np.full((10, len(units)), 1.0 / len(units), np.float32))
    assert isinstance(dec.decode(em)[0].text, str)


def test_unknown_unit_in_lexicon(units: UnitDictionary, good: dict, tmp_path: Path) -> None:
    lex = tmp_path / "bad_lexicon.txt"
    lex.write_text("THE\tT H E |\nCAFÉ\tC A F É |\n")
    with pytest.raises(DecodingError, match=r"bad_lexicon.txt:2: unit 'É' of word 'CAFÉ' is not in the model's "
                                            r"dictionary .*dict.ltr.txt"):
        kenlm(units, lm=good["lm"], lexicon=str(lex))


def test_lexicon_using_lowercase_letters_for_uppercase_model(units: UnitDictionary, good: dict,
                                                             tmp_path: Path) -> None:
    lex = tmp_path / "lower.txt"
    lex.write_text("the\tt h e |\n")
    with pytest.raises(DecodingError, match=r"lower.txt:1: unit 't'"):
        kenlm(units, lm=good["lm"], lexicon=str(lex))


def test_empty_lexicon(units: UnitDictionary, good: dict, tmp_path: Path) -> None:
    lex = tmp_path / "empty.txt"
    lex.write_text("\n\n")
    with pytest.raises(DecodingError, match=r"empty.txt: lexicon is empty"):
        kenlm(units, lm=good["lm"], lexicon=str(lex))
    lex.write_text("THE\n")
    with pytest.raises(DecodingError, match=r"empty.txt:1: word 'THE' has no spelling"):
        kenlm(units, lm=good["lm"], lexicon=str(lex))


def test_lm_order_above_kenlm_maximum(units: UnitDictionary, good: dict, tmp_path: Path) -> None:
    lm = hand_arpa(tmp_path / "7gram.arpa", ["THE", "CAT", "SAT", "ON", "THE", "MAT", "TODAY"], KENLM_MAX_ORDER + 1)
    with pytest.raises(DecodingError, match=rf"7gram.arpa: 7-gram LM but KenLM here is compiled for at most "
                                            rf"{KENLM_MAX_ORDER}-grams"):
        kenlm(units, lm=str(lm), lexicon=good["lexicon"])
    # the same order, written into a binary header (KenLM would refuse it the same way)
    ok = hand_arpa(tmp_path / "6gram.arpa", ["THE", "CAT", "SAT", "ON", "THE", "MAT", "TODAY"], KENLM_MAX_ORDER)
    assert inspect_lm(ok).order == KENLM_MAX_ORDER


@pytest.mark.skipif(not have_kenlm_tools(), reason="needs build_binary: run `make kenlm`")
def test_binary_header_order_and_incomplete_binary(units: UnitDictionary, good: dict, tmp_path: Path) -> None:
    binary = tmp_path / "3gram.bin"
    run_build_binary(find_kenlm_tools(), Path(good["lm"]), binary, "probing")
    info = inspect_lm(binary)
    assert (info.format, info.order, info.counts) == ("binary", 3, inspect_lm(good["lm"]).counts)
    data = bytearray(binary.read_bytes())
    data[88] = KENLM_MAX_ORDER + 2  # the order byte of KenLM's header
    (tmp_path / "8gram.bin").write_bytes(bytes(data))
    with pytest.raises(DecodingError, match=r"8gram.bin: 8-gram LM"):
        kenlm(units, lm=str(tmp_path / "8gram.bin"), lexicon=good["lexicon"])
    (tmp_path / "half.bin").write_bytes(b"mmap lm http://kheafield.com/code incomplete\n" + bytes(200))
    with pytest.raises(DecodingError, match=r"half.bin: KenLM binary that did not finish building"):
        kenlm(units, lm=str(tmp_path / "half.bin"), lexicon=good["lexicon"])


@pytest.mark.parametrize("content", [b"just some text\nnot a model\n", b"\x00\x01\x02binary junk" * 10,
                                     b"\\data\\\nngram 1=x\n"])
def test_not_an_lm_file(units: UnitDictionary, good: dict, tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "model.lm"
    f.write_bytes(content)
    with pytest.raises(DecodingError, match=r"model.lm(:\d+)?: (not an ARPA or KenLM binary|bad ARPA header)"):
        kenlm(units, lm=str(f), lexicon=good["lexicon"])


def test_gzipped_and_missing_lm(units: UnitDictionary, good: dict, tmp_path: Path) -> None:
    gz = tmp_path / "lm.arpa.gz"
    gz.write_bytes(gzip.compress(Path(good["lm"]).read_bytes()))
    with pytest.raises(DecodingError, match=r"lm.arpa.gz: gzip-compressed LM"):
        kenlm(units, lm=str(gz), lexicon=good["lexicon"])
    with pytest.raises(DecodingError, match=r"nope.bin: language model not found"):
        kenlm(units, lm=str(tmp_path / "nope.bin"), lexicon=good["lexicon"])


def test_damaged_arpa_body_is_an_error_not_a_crash(units: UnitDictionary, good: dict, tmp_path: Path) -> None:
    text = Path(good["lm"]).read_text().replace("\\2-grams:", "\\2-grams:\ngarbage line here")
    (tmp_path / "damaged.arpa").write_text(text)
    with pytest.raises(DecodingError, match=r"damaged.arpa: KenLM cannot load this LM"):
        kenlm(units, lm=str(tmp_path / "damaged.arpa"), lexicon=good["lexicon"])


def test_lexicon_and_lm_share_no_word(units: UnitDictionary, tmp_path: Path) -> None:
    lm = hand_arpa(tmp_path / "lower.arpa", ["the", "cat"], 2)
    lex = tmp_path / "lexicon.txt"
    lex.write_text("THE\tT H E |\nCAT\tC A T |\n")
    with pytest.raises(DecodingError, match=r"none of its 2 words is in the LM .*lower.arpa"):
        kenlm(units, lm=str(lm), lexicon=str(lex))


def test_lexfree_with_a_word_lm(units: UnitDictionary, good: dict) -> None:
    with pytest.raises(DecodingError, match=r"lexfree needs a unit-level LM"):
        build_decoder(DecoderConfig(type="lexfree", lm=good["lm"]), units)


def test_missing_options(units: UnitDictionary, good: dict) -> None:
    with pytest.raises(DecodingError, match=r"needs --lm .* and --lexicon"):
        kenlm(units, lm=good["lm"])
    with pytest.raises(DecodingError, match=r"unknown decoder 'beam'"):
        DecoderConfig(type="beam")
    no_boundary = UnitDictionary.from_units(["A", "B"])
    with pytest.raises(DecodingError, match=r"no word boundary"):
        kenlm(no_boundary, **good)
