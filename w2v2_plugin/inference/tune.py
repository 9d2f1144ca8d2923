"""``--tune``: search lm_weight and word_score on a dev split from cached emissions.

Random search, or Bayesian optimisation (as the paper tuned these two weights): a Gaussian
process (scikit-learn) fitted to the WERs seen so far, the next point maximising expected
improvement over random candidates. Fixed seed: the same emissions give the same search.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from w2v2_common.fileio import write_text_atomic

from ..decoding.decoders import DecoderConfig
from ..decoding.errors import DecodingError
from .cache import jsonable


@dataclass
class TuneConfig:
    trials: int = field(default=24, metadata={"help": "decodings of the dev split to try"})
    method: str = field(default="bayes", metadata={"help": "bayes (Gaussian process + expected improvement) "
                                                           "| random"})
    seed: int = field(default=0, metadata={"help": "random seed of the search"})
    lm_weight: tuple[float, float] = field(default=(0.0, 5.0), metadata={"help": "lm_weight search range"})
    word_score: tuple[float, float] = field(default=(-5.0, 5.0), metadata={"help": "word_score search range"})
    initial: int = field(default=6, metadata={"help": "random trials before the Gaussian process takes over"})


class Trial(NamedTuple):
    lm_weight: float
    word_score: float
    wer: float


class TuneResult(NamedTuple):
    best: Trial
    trials: list[Trial]


def _expected_improvement(mu: np.ndarray, sigma: np.ndarray, best: float) -> np.ndarray:
    from scipy.stats import norm  # type: ignore[import-untyped]  # reason: scipy ships no stubs or py.typed

    sigma = np.maximum(sigma, 1e-9)
    z = (best - mu) / sigma
    return (best - mu) * norm.cdf(z) + sigma * norm.pdf(z)


def search(evaluate: Callable[[float, float], float], cfg: TuneConfig,
           on_trial: Callable[[Trial], None] | None = None) -> TuneResult:
    """Minimise ``evaluate(lm_weight, word_score)`` (a WER) over the configured box."""
    if cfg.method not in ("bayes", "random"):
        raise DecodingError(f"--tune-method must be bayes or random (got {cfg.method!r})")
    if cfg.trials < 1:
        raise DecodingError("--tune-trials must be >= 1")
    rng = np.random.default_rng(cfg.seed)
    lo = np.array([cfg.lm_weight[0], cfg.word_score[0]])
    hi = np.array([cfg.lm_weight[1], cfg.word_score[1]])
    unit_points: list[np.ndarray] = []
    trials: list[Trial] = []
    for n in range(cfg.trials):
        if cfg.method == "random" or n < cfg.initial:
            u = rng.random(2)
        else:
            from sklearn.gaussian_process import GaussianProcessRegressor
            from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

            x = np.stack(unit_points)
            y = np.array([t.wer for t in trials])
            gp = GaussianProcessRegressor(ConstantKernel(1.0) * Matern(length_scale=[0.3, 0.3], nu=2.5)
                                          + WhiteKernel(1e-2), normalize_y=True, random_state=cfg.seed,
                                          n_restarts_optimizer=2)
            with warnings.catch_warnings():  # kernel bounds hit on tiny dev sets: harmless here
                warnings.simplefilter("ignore")
                gp.fit(x, y)
            cand = rng.random((2048, 2))
            mu, sd = gp.predict(cand, return_std=True)
            u = cand[int(np.argmax(_expected_improvement(mu, sd, float(y.min()))))]
        # rounded before use: the reported pair is exactly the pair that was decoded
        lm_weight, word_score = (round(float(v), 4) for v in lo + u * (hi - lo))
        trial = Trial(lm_weight, word_score, float(evaluate(lm_weight, word_score)))
        unit_points.append(u)
        trials.append(trial)
        if on_trial:
            on_trial(trial)
    best = min(trials, key=lambda t: (t.wer if not math.isnan(t.wer) else math.inf))
    return TuneResult(best, trials)


def write_tuned(path: str | Path, result: TuneResult, base: DecoderConfig, cfg: TuneConfig,
                dev: str) -> None:
    """The file ``w2v2-infer --decoder-params`` reads: best weights + every trial."""
    record = {
        "lm_weight": result.best.lm_weight, "word_score": result.best.word_score, "dev_wer": result.best.wer,
        "dev": dev, "decoder": asdict(replace(base, lm_weight=result.best.lm_weight,
                                              word_score=result.best.word_score)),
        "search": asdict(cfg), "trials": [t._asdict() for t in result.trials],
    }
    write_text_atomic(Path(path), json.dumps(jsonable(record), indent=2))


def read_tuned(path: str | Path) -> dict[str, float]:
    """``{"lm_weight": .., "word_score": ..}`` from a ``--tune`` result file."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        return {"lm_weight": float(d["lm_weight"]), "word_score": float(d["word_score"])}
    except FileNotFoundError:
        raise DecodingError(f"{p}: decoder parameter file not found; write one with 'w2v2-infer ... --tune'") from None
    except (ValueError, KeyError, TypeError):
        raise DecodingError(f"{p}: not a --tune result (needs numeric lm_weight and word_score)") from None


def curve(trials: Sequence[Trial]) -> str:
    """The trials sorted by WER, as an aligned text table."""
    rows = ["  lm_weight  word_score     WER"]
    for t in sorted(trials, key=lambda t: t.wer):
        rows.append(f"  {t.lm_weight:9.3f}  {t.word_score:10.3f}  {t.wer:6.2f}")
    return "\n".join(rows)
