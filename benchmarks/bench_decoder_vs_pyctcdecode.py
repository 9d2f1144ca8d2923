"""Benchmark: this project's KenLM lexicon decoder (flashlight) vs pyctcdecode, same inputs.

Both decode the same emissions with the same 4-gram ARPA/KenLM model and the same beam width:

* emissions: synthetic but CTC-shaped (peaked frames, blanks, noise), from sentences of a
  random word-bigram language, where 15% of the letters are planted acoustic confusions
  (the wrong letter wins its frames) - greedy decoding gets ~40% WER, the LM must fix it;
* LM: ``w2v2-lm build`` (lmplz, modified Kneser-Ney) on 20k sentences of the same language;
  pyctcdecode gets the ARPA's vocabulary as its unigram list (its lexicon-like constraint);
* each decoder's LM weight / word bonus is chosen on a dev set from a small grid, then the
  test set is decoded once; times are decoding only (LM loading reported apart), one
  process, one thread each.

pyctcdecode pins numpy<2, so it runs in its own venv (``bash benchmarks/setup_pyctcdecode_env.sh``
-> ``.venv-bench``), in a subprocess reading the same emissions saved as ``.npz``::

    python benchmarks/bench_decoder_vs_pyctcdecode.py [--test 200] [--beam 100] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LETTERS = "ETAONIHSRDLUMWCFGYPBVK'XJQZ"
ALPHABET = "ABDEIKLMNORST"  # the synthetic language's letters: many near-neighbour words


# ----------------------------------------------------------------------------- peer side
def run_peer(work: Path, split: str, settings: list[tuple[float, float]], beam: int) -> dict:
    """Runs inside .venv-bench: pyctcdecode only (no project imports)."""
    from pyctcdecode import build_ctcdecoder

    data = np.load(work / f"{split}.npz")
    ems = [data[f"e{i}"] for i in range(len(data.files))]
    labels = json.loads((work / "labels.json").read_text())
    unigrams = (work / "unigrams.txt").read_text().split()
    out = {"settings": []}
    for alpha, beta in settings:
        t0 = time.perf_counter()
        dec = build_ctcdecoder(labels, kenlm_model_path=str(work / "lm" / "4gram.bin"), unigrams=unigrams,
                               alpha=alpha, beta=beta)
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        hyps = [dec.decode(e, beam_width=beam) for e in ems]
        out["settings"].append({"alpha": alpha, "beta": beta, "load_seconds": load,
                                "decode_seconds": time.perf_counter() - t0, "hyps": hyps})
    return out


# ----------------------------------------------------------------------------- main side
def wer(hyps: list[str], refs: list[str]) -> float:
    from w2v2_plugin.decoding.metrics import count_errors, rates, total

    return rates(total(count_errors(h, r) for h, r in zip(hyps, refs, strict=True)))[0]


def ours(ems: list[np.ndarray], units, lm, beam: int, lm_weight: float, word_score: float,
         beam_size_token: int | None = None, beam_threshold: float = 25.0) -> tuple[list[str], float, float]:
    from w2v2_plugin.decoding import DecoderConfig, build_decoder

    t0 = time.perf_counter()
    dec = build_decoder(DecoderConfig(type="kenlm", lm=str(lm.binary), lexicon=str(lm.lexicon), beam=beam,
                                      beam_size_token=beam_size_token, beam_threshold=beam_threshold,
                                      lm_weight=lm_weight, word_score=word_score), units)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    hyps = [dec.decode(e)[0].text for e in ems]
    return hyps, load, time.perf_counter() - t0


# (beam, beam_size_token, beam_threshold): the speed/accuracy sweep of this decoder
SWEEP = [(50, 10, 25.0), (20, 10, 25.0), (20, 8, 15.0), (10, 8, 15.0), (5, 5, 10.0)]


def peer(args: argparse.Namespace, work: Path, split: str, settings: list[tuple[float, float]]) -> dict:
    cmd = [args.peer_python, str(Path(__file__).resolve()), "--peer", str(work), "--split", split,
           "--beam", str(args.beam), "--settings", json.dumps(settings)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"pyctcdecode peer failed:\n{proc.stderr[-2000:]}")
    return json.loads((work / f"peer_{split}.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--test", type=int, default=200, help="test utterances")
    p.add_argument("--dev", type=int, default=40, help="dev utterances (weight choice)")
    p.add_argument("--beam", type=int, default=100, help="beam width of both decoders")
    p.add_argument("--confusion", type=float, default=0.15, help="fraction of letters confused")
    p.add_argument("--out", default=str(ROOT / "results" / "bench_decoder"), help="work/output directory")
    p.add_argument("--peer-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    p.add_argument("--peer", help=argparse.SUPPRESS)
    p.add_argument("--split", help=argparse.SUPPRESS)
    p.add_argument("--settings", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.peer:
        work = Path(args.peer)
        res = run_peer(work, args.split, [tuple(s) for s in json.loads(args.settings)], args.beam)
        (work / f"peer_{args.split}.json").write_text(json.dumps(res))
        return
    if not Path(args.peer_python).is_file():
        sys.exit(f"{args.peer_python}: no pyctcdecode venv; run: bash benchmarks/setup_pyctcdecode_env.sh")

    sys.path.insert(0, str(ROOT))
    from testing_support.synthetic import confusable, make_language
    from w2v2_plugin.decoding import DecoderConfig, UnitDictionary, build_decoder
    from w2v2_plugin.lm.lm_build import LMBuildConfig, build_lm

    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    (work / "dict.ltr.txt").write_text("| 1\n" + "".join(f"{c} 1\n" for c in LETTERS))
    units = UnitDictionary.load(work / "dict.ltr.txt")
    lang = make_language(0, n_words=1500, alphabet=ALPHABET, min_word=2, max_word=5)
    (work / "corpus.txt").write_text("\n".join(lang.sentences(20000, np.random.default_rng(1))) + "\n")
    lm = build_lm(LMBuildConfig(corpus=str(work / "corpus.txt"), out=str(work / "lm"), order=4,
                                dict=str(work / "dict.ltr.txt")), progress=False)
    (work / "unigrams.txt").write_text("\n".join(sorted(lang.vocab)) + "\n")
    # pyctcdecode's alphabet: blank "", word delimiter " ", then the letters (fairseq's never-emitted
    # <pad> </s> <unk> columns are dropped for it: the synthetic model gives them ~0 probability)
    keep = [units.blank] + [i for i in range(len(units)) if i not in units.special_indices()]
    labels = ["" if i == units.blank else (" " if units.symbols[i] == "|" else units.symbols[i]) for i in keep]
    (work / "labels.json").write_text(json.dumps(labels))
    splits = {}
    for name, n, seed in (("dev", args.dev, 2), ("test", args.test, 3)):
        refs = lang.sentences(n, np.random.default_rng(seed))
        ems = [confusable(r, units, np.random.default_rng(seed * 100000 + i), args.confusion, letters=ALPHABET,
                          margin=1.0, noise=1.5).emissions for i, r in enumerate(refs)]
        np.savez(work / f"{name}.npz", **{f"e{i}": e[:, keep] for i, e in enumerate(ems)})
        splits[name] = (refs, ems)

    ours_grid = [(w, s) for w in (1.0, 2.0, 4.0) for s in (-1.0, 0.0)]
    peer_grid = [(a, b) for a in (0.5, 1.0, 2.0) for b in (0.0, 1.0)]
    refs, ems = splits["dev"]
    dev_ours = {g: wer(ours(ems, units, lm, args.beam, *g)[0], refs) for g in ours_grid}
    dev_peer = {(s["alpha"], s["beta"]): wer(s["hyps"], refs) for s in peer(args, work, "dev", peer_grid)["settings"]}
    best_ours = min(dev_ours, key=dev_ours.get)
    best_peer = min(dev_peer, key=dev_peer.get)

    refs, ems = splits["test"]
    frames = sum(e.shape[0] for e in ems)
    greedy = build_decoder(DecoderConfig(), units)
    viterbi_wer = wer([greedy.decode(e)[0].text for e in ems], refs)
    o_hyps, o_load, o_time = ours(ems, units, lm, args.beam, *best_ours)
    pr = peer(args, work, "test", [best_peer])["settings"][0]
    o_wer, p_wer = wer(o_hyps, refs), wer(pr["hyps"], refs)
    sweep = []
    for beam, bst, thr in SWEEP:
        h, _, t = ours(ems, units, lm, beam, *best_ours, beam_size_token=bst, beam_threshold=thr)
        sweep.append({"beam": beam, "beam_size_token": bst, "beam_threshold": thr, "wer": wer(h, refs),
                      "decode_seconds": t})
    at_equal = [x for x in sweep + [{"beam": args.beam, "beam_size_token": None, "beam_threshold": 25.0,
                                      "wer": o_wer, "decode_seconds": o_time}] if x["wer"] <= p_wer]
    fastest = min(at_equal, key=lambda x: x["decode_seconds"]) if at_equal else None
    result = {
        "utterances": len(refs), "frames": frames, "beam": args.beam, "viterbi_wer": viterbi_wer,
        "ours": {"lm_weight": best_ours[0], "word_score": best_ours[1], "wer": o_wer, "decode_seconds": o_time,
                 "load_seconds": o_load, "dev_grid": {str(k): v for k, v in dev_ours.items()}, "sweep": sweep},
        "pyctcdecode": {"alpha": best_peer[0], "beta": best_peer[1], "wer": p_wer,
                        "decode_seconds": pr["decode_seconds"], "load_seconds": pr["load_seconds"],
                        "dev_grid": {str(k): v for k, v in dev_peer.items()}},
        "speedup_same_beam": pr["decode_seconds"] / o_time,
        "fastest_at_equal_or_lower_wer": fastest,
        "speedup_at_equal_or_lower_wer": pr["decode_seconds"] / fastest["decode_seconds"] if fastest else None,
    }
    (work / "bench_result.json").write_text(json.dumps(result, indent=2))
    n = len(refs)
    print(f"{n} test utterances, {frames} frames, same 4-gram KenLM ({lm.vocab} words); greedy (Viterbi) WER "
          f"{viterbi_wer:.2f}%; weights chosen on {args.dev} dev utterances")
    print(f"  pyctcdecode, beam {args.beam:3d}                 : WER {p_wer:6.2f}%  "
          f"decode {pr['decode_seconds']:7.2f} s "
          f"({1000 * pr['decode_seconds'] / n:6.1f} ms/utt)  alpha {best_peer[0]} beta {best_peer[1]}")
    print(f"  this decoder, beam {args.beam:3d}                : WER {o_wer:6.2f}%  decode {o_time:7.2f} s "
          f"({1000 * o_time / n:6.1f} ms/utt)  lm_weight {best_ours[0]} word_score {best_ours[1]}  "
          f"-> {result['speedup_same_beam']:.1f}x faster")
    for x in sweep:
        print(f"  this decoder, beam {x['beam']:3d} tok {x['beam_size_token']:2d} thr {x['beam_threshold']:4.0f}: "
              f"WER {x['wer']:6.2f}%  decode {x['decode_seconds']:7.2f} s "
              f"({1000 * x['decode_seconds'] / n:6.1f} ms/utt)")
    if fastest:
        print(f"  at equal or lower WER than pyctcdecode ({fastest['wer']:.2f}% <= {p_wer:.2f}%): "
              f"{result['speedup_at_equal_or_lower_wer']:.1f}x faster (beam {fastest['beam']}); "
              f"details in {work / 'bench_result.json'}")
    else:
        print(f"  no setting of this decoder reached pyctcdecode's WER ({p_wer:.2f}%)")


if __name__ == "__main__":
    main()
