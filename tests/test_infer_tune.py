"""--tune on cached emissions, --decoder-params, and LM decoding beating Viterbi (synthetic)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from testing_support.synthetic import confusable, make_language
from w2v2_plugin.cli.infer import main as infer_main
from w2v2_plugin.decoding.units import UnitDictionary
from w2v2_plugin.inference.cache import EmissionCache
from w2v2_plugin.inference.tune import TuneConfig, search
from w2v2_plugin.lm.kenlm_tools import have_kenlm_tools
from w2v2_plugin.lm.lm_build import LMBuildConfig, build_lm

LETTERS = list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")
ALPHABET = "ABDEIKLMNORST"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not have_kenlm_tools():
        pytest.skip("lmplz/build_binary missing: run `make kenlm`")
    tmp = tmp_path_factory.mktemp("tune")
    (tmp / "dict.ltr.txt").write_text("".join(f"{s} 1\n" for s in ["|", *LETTERS]))
    units = UnitDictionary.load(tmp / "dict.ltr.txt")
    lang = make_language(0, n_words=300, alphabet=ALPHABET, min_word=2, max_word=4)
    (tmp / "corpus.txt").write_text("\n".join(lang.sentences(3000, np.random.default_rng(1))) + "\n")
    lm = build_lm(LMBuildConfig(corpus=str(tmp / "corpus.txt"), out=str(tmp / "lm"), order=3,
                                dict=str(tmp / "dict.ltr.txt")), progress=False)
    cache = EmissionCache.create(tmp / "em", units, 0.02, checkpoint="synthetic")
    for i, ref in enumerate(lang.sentences(12, np.random.default_rng(2))):
        utt = confusable(ref, units, np.random.default_rng(10 + i), 0.15, letters=ALPHABET, margin=1.0, noise=1.5)
        cache.add(i, f"utt{i}", ref, utt.emissions.shape[0] * 0.02, utt.emissions)
    cache.finish()
    return {"tmp": tmp, "em": tmp / "em", "lm": lm}


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.emissions.json").read_text())


def test_tune_writes_best_pair_and_lm_beats_viterbi(dev: dict, tmp_path: Path, capsys) -> None:
    lm = dev["lm"]
    base = ["--emissions", str(dev["em"]), "--workers", "1", "--quiet"]
    assert infer_main(base + ["--results-path", str(tmp_path / "viterbi")]) == 0
    viterbi_wer = _summary(tmp_path / "viterbi")["wer"]
    kenlm = base + ["--decoder", "kenlm", "--lm", str(lm.binary), "--lexicon", str(lm.lexicon), "--beam", "30"]
    out = tmp_path / "tuned"
    assert infer_main(kenlm + ["--tune", "--tune-trials", "8", "--tune-method", "bayes", "--results-path", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "WER by (lm_weight, word_score), best first" in printed and "best: lm_weight" in printed
    tuned = json.loads((out / "tuned.json").read_text())
    wers = [t["wer"] for t in tuned["trials"]]
    assert len(wers) == 8 and tuned["dev_wer"] == min(wers)
    assert 0 <= tuned["lm_weight"] <= 5 and -5 <= tuned["word_score"] <= 5
    summary = _summary(out)  # the split decoded with the best pair
    assert summary["decoder"]["lm_weight"] == tuned["lm_weight"] and summary["wer"] == pytest.approx(tuned["dev_wer"], abs=1e-3)
    assert summary["wer"] < viterbi_wer / 2, (summary["wer"], viterbi_wer)
    # w2v2-infer reads the result back; an explicit flag wins over the file
    again = tmp_path / "again"
    assert infer_main(kenlm + ["--decoder-params", str(out / "tuned.json"), "--results-path", str(again)]) == 0
    assert _summary(again)["wer"] == pytest.approx(tuned["dev_wer"], abs=1e-3)
    assert infer_main(kenlm + ["--decoder-params", str(out / "tuned.json"), "--lm-weight", "0.25",
                               "--results-path", str(again)]) == 0
    assert _summary(again)["decoder"]["lm_weight"] == 0.25
    assert _summary(again)["decoder"]["word_score"] == tuned["word_score"]


def test_search_is_seeded_and_random_or_bayes() -> None:
    def bowl(a: float, b: float) -> float:  # a smooth WER-like surface, minimum at (2, -1)
        return (a - 2.0) ** 2 + 0.5 * (b + 1.0) ** 2

    r1 = search(bowl, TuneConfig(trials=12, method="bayes", seed=3))
    r2 = search(bowl, TuneConfig(trials=12, method="bayes", seed=3))
    assert r1 == r2
    rnd = search(bowl, TuneConfig(trials=12, method="random", seed=3))
    assert rnd.trials[:6] == r1.trials[:6]  # same seeded start, then the GP takes over
    assert r1.best.wer <= rnd.best.wer and r1.best.wer < 0.5


def test_tune_errors(dev: dict, tmp_path: Path, capsys) -> None:
    assert infer_main(["--emissions", str(dev["em"]), "--tune", "--quiet", "--workers", "1"]) == 2
    assert "--tune searches LM weights" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert infer_main(["--emissions", str(dev["em"]), "--decoder-params", str(bad), "--quiet"]) == 2
    assert "not a --tune result" in capsys.readouterr().err
