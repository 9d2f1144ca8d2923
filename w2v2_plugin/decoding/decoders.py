"""CTC decoders behind one interface: ``viterbi``, ``kenlm`` (lexicon + word LM), ``lexfree``.

All decoders take one utterance's emissions, a float32 ``(frame, unit)`` array of log-probs
(``model.get_normalized_probs(..., log_probs=True)``, padding frames removed), and return the
n-best :class:`Hypothesis` list, best first. The beam-search decoders are flashlight-text's
``LexiconDecoder`` / ``LexiconFreeDecoder``; a decoder object is cheap to use but costly to build
(it loads the LM and the lexicon trie), so parallel workers each build their own from the
picklable :class:`DecoderConfig` with :func:`build_decoder`.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from w2v2_common.units import LETTER_BOUNDARY, SP_BOUNDARY

from .errors import DecodingError
from .lexicon import Lexicon, load_lexicon
from .lm_files import LMInfo, inspect_lm
from .timestamps import WordSpan, word_spans
from .units import UnitDictionary

logger = logging.getLogger(__name__)

DECODER_TYPES = ("viterbi", "kenlm", "lexfree")


@dataclass
class DecoderConfig:
    """Decoder choice and beam-search knobs (defaults: the paper's model-selection setting)."""

    type: str = field(default="viterbi", metadata={"help": "viterbi (greedy CTC, no LM) | kenlm (lexicon + "
                                                          "word n-gram) | lexfree (no lexicon; no LM or a unit LM)"})
    lm: str | None = field(default=None, metadata={"help": "ARPA or KenLM binary LM (word LM for kenlm, "
                                                           "unit LM for lexfree)"})
    lexicon: str | None = field(default=None, metadata={"help": "lexicon file (WORD<TAB>UNITS), kenlm only"})
    beam: int = field(default=50, metadata={"help": "hypotheses kept per frame"})
    beam_size_token: int | None = field(default=None, metadata={"help": "units tried per frame (default: all)"})
    beam_threshold: float = field(default=25.0, metadata={"help": "drop hypotheses this far below the best"})
    lm_weight: float = field(default=2.0, metadata={"help": "LM score weight"})
    word_score: float = field(default=-1.0, metadata={"help": "score added per word (insertion bonus)"})
    unk_weight: float = field(default=-math.inf, metadata={"help": "score of an out-of-lexicon word "
                                                                   "(-inf: lexicon words only)"})
    sil_weight: float = field(default=0.0, metadata={"help": "score added per silence unit"})
    nbest: int = field(default=1, metadata={"help": "hypotheses returned per utterance"})
    stream_after: int = field(default=15000, metadata={"help": "frames (15000 = 5 min) above which the beam "
                                                                "search runs in blocks keeping a bounded history "
                                                                "(memory bounded; 1-best only)"})
    stream_lookback: int = field(default=250, metadata={"help": "frames of full beam history kept when streaming"})

    def __post_init__(self) -> None:
        if self.type not in DECODER_TYPES:
            raise DecodingError(f"unknown decoder {self.type!r}; choose one of {', '.join(DECODER_TYPES)}")
        if self.beam < 1 or self.nbest < 1:
            raise DecodingError(f"beam ({self.beam}) and nbest ({self.nbest}) must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


class Hypothesis(NamedTuple):
    """One decoding: text, unit indices, scores, the frame path and word spans."""

    text: str
    units: tuple[int, ...]  # CTC-collapsed unit indices, no blanks
    score: float  # total: acoustic + lm_weight * LM + word/sil scores
    am_score: float
    lm_score: float
    frames: tuple[int, ...]  # one unit per frame, blanks included
    words: tuple[WordSpan, ...]


class Decoder(Protocol):
    units: UnitDictionary

    def decode(self, emissions: np.ndarray) -> list[Hypothesis]:
        """``emissions``: (frame, unit) float32 log-probs of one utterance; n-best, best first."""
        ...


def _check_emissions(emissions: np.ndarray, units: UnitDictionary) -> np.ndarray:
    if emissions.ndim != 2 or emissions.shape[1] != len(units):
        raise DecodingError(f"emissions have shape {tuple(emissions.shape)}, expected (frames, {len(units)}) "
                            f"for the unit dictionary {units.source}; model and dictionary do not match")
    return np.ascontiguousarray(emissions, dtype=np.float32)


def _make_hypothesis(units: UnitDictionary, frames: Sequence[int], score: float, am: float,
                     lm: float) -> Hypothesis:
    collapsed = units.ctc_collapse(frames)
    spans = word_spans(frames, units)
    return Hypothesis(units.units_to_text(collapsed), tuple(collapsed), float(score), float(am), float(lm),
                      tuple(int(f) for f in frames), tuple(spans))


class ViterbiDecoder:
    """Greedy CTC: the best unit per frame, repeats merged, blanks removed."""

    def __init__(self, units: UnitDictionary) -> None:
        self.units = units

    def decode(self, emissions: np.ndarray) -> list[Hypothesis]:
        em = _check_emissions(emissions, self.units)  # (frame, unit)
        if em.shape[0] == 0:
            return [_make_hypothesis(self.units, [], 0.0, 0.0, 0.0)]
        path = em.argmax(axis=1)  # (frame,)
        score = float(em[np.arange(em.shape[0]), path].sum())
        return [_make_hypothesis(self.units, path.tolist(), score, score, 0.0)]


class _FlashlightDecoder:
    """Shared result handling for flashlight's beam-search decoders."""

    units: UnitDictionary
    nbest: int
    stream_after: int = 15000
    stream_lookback: int = 250
    _lm_weight: float = 0.0
    _word_score: float = 0.0
    _sil_weight: float = 0.0
    _decoder: object

    def _decode_streaming(self, em: np.ndarray) -> list[Hypothesis]:
        """Long inputs: decode block by block, committing the best path older than the
        look-back window and pruning the rest, so memory does not grow with the file's length.

        ``get_best_hypothesis(lookback)`` returns the path up to ``lookback`` frames ago, starting
        with the last token of the previous piece (or the start sentinel); after ``prune`` the
        decoder keeps only that path's end as its root. Concatenating the pieces (minus each
        later piece's first token) gives the same token sequence as an offline decode whenever
        the committed prefix was already decided, which the tests check.
        """
        dec = self._decoder
        n_frames, n_units = em.shape
        block = max(self.stream_lookback, 1000)
        ptr, row = em.ctypes.data, n_units * em.itemsize
        pieces: list[list[int]] = []
        dec.decode_begin()  # type: ignore[attr-defined]  # reason: flashlight-text has no stubs
        for start in range(0, n_frames, block):
            n = min(block, n_frames - start)
            dec.decode_step(ptr + start * row, n, n_units)  # type: ignore[attr-defined]  # reason: flashlight-text has no stubs
            if start + n < n_frames:
                pieces.append(list(dec.get_best_hypothesis(self.stream_lookback).tokens))  # type: ignore[attr-defined]  # reason: flashlight-text has no stubs
                dec.prune(self.stream_lookback)  # type: ignore[attr-defined]  # reason: flashlight-text has no stubs
        dec.decode_end()  # type: ignore[attr-defined]  # reason: flashlight-text has no stubs
        finals = dec.get_all_final_hypothesis()  # type: ignore[attr-defined]  # reason: flashlight-text has no stubs
        if not finals:
            logger.warning("beam search found no complete hypothesis; using the Viterbi path")
            return ViterbiDecoder(self.units).decode(em)
        best = finals[0]
        pieces.append(list(best.tokens))
        tokens = pieces[0] + [t for p in pieces[1:] for t in p[1:]]
        frames = _extend_word_ends(tokens[1: n_frames + 1], em, self.units)
        # am/lm scores are running totals, but prune() re-bases the total score: rebuild it
        hyp = _make_hypothesis(self.units, frames, 0.0, best.emittingModelScore, best.lmScore)
        sil = self.units.silence
        n_sil = sum(1 for i, f in enumerate(tokens) if f == sil and (i == 0 or tokens[i - 1] != sil))
        score = hyp.am_score + self._lm_weight * hyp.lm_score + self._word_score * len(hyp.words) \
            + self._sil_weight * n_sil
        return [hyp._replace(score=score)]

    def decode(self, emissions: np.ndarray) -> list[Hypothesis]:
        em = _check_emissions(emissions, self.units)  # (frame, unit), C-contiguous float32
        n_frames, n_units = em.shape
        if n_frames == 0:
            return [_make_hypothesis(self.units, [], 0.0, 0.0, 0.0)]
        if n_frames > self.stream_after:
            return self._decode_streaming(em)
        # flashlight reads the buffer through a raw pointer: ``em`` must stay alive for the call.
        results = self._decoder.decode(em.ctypes.data, n_frames, n_units)  # type: ignore[attr-defined]  # reason: flashlight-text has no stubs
        hyps: list[Hypothesis] = []
        seen: set[str] = set()
        for r in results:
            # ``r.tokens`` has n_frames + 2 entries: the start and end sentinels around the frame path.
            frames = _extend_word_ends(list(r.tokens)[1: n_frames + 1], em, self.units)
            hyp = _make_hypothesis(self.units, frames, r.score, r.emittingModelScore, r.lmScore)
            if hyp.text in seen:  # different alignments of the same words: keep the best one
                continue
            seen.add(hyp.text)
            hyps.append(hyp)
            if len(hyps) == self.nbest:
                break
        if not hyps:
            # Every beam died (e.g. no lexicon word fits the audio): fall back to greedy so the
            # utterance still gets a hypothesis; the caller sees the empty LM score.
            logger.warning("beam search found no complete hypothesis; using the Viterbi path")
            return ViterbiDecoder(self.units).decode(em)
        return hyps


def _extend_word_ends(frames: list[int], em: np.ndarray, units: UnitDictionary) -> list[int]:
    """Give a word's last unit back the frames the lexicon beam search labelled silence/blank.

    LexiconDecoder finishes a word on the first frame of its last unit and is then at the
    trie root, where it can only emit silence or blank; with sentencepiece units (whose word
    ends are not a ``|``) the later frames of that unit are mislabelled, cutting word end
    times short. Relabelling such a frame as a repeat of the previous unit, where the
    emissions agree (argmax), cannot change the unit sequence: the result is checked.
    """
    blank, sil = units.blank, units.silence
    fixed = list(frames)
    best = em.argmax(axis=1)  # (frame,)
    for t in range(1, len(fixed)):
        prev = fixed[t - 1]
        if fixed[t] in (blank, sil) and prev not in (blank, sil) and best[t] == prev:
            fixed[t] = prev
    if units.ctc_collapse(fixed) != units.ctc_collapse(frames):
        return frames
    return fixed


class _FlWordDict(Protocol):
    """The part of flashlight-text's Dictionary used here (flashlight-text has no stubs)."""

    def get_index(self, entry: str) -> int: ...


class _FlLM(Protocol):
    """The part of flashlight-text's LM (KenLM) used here (flashlight-text has no stubs)."""

    def start(self, start_with_nothing: bool) -> Any: ...

    def score(self, state: Any, usr_token_idx: int) -> tuple[Any, float]: ...


def _criterion():
    from flashlight.lib.text.decoder import CriterionType

    return CriterionType.CTC


def _load_kenlm(path: str, word_dict: _FlWordDict) -> _FlLM:
    from flashlight.lib.text.decoder.kenlm import KenLM

    try:
        return KenLM(path, word_dict)
    except RuntimeError as e:  # KenLM's C++ exceptions: say which file, keep KenLM's first line
        first = str(e).strip().splitlines()[-1][:200] if str(e).strip() else "unknown error"
        raise DecodingError(f"{path}: KenLM cannot load this LM ({first}); rebuild it with 'w2v2-lm build'") from None


def _word_dictionary(words: Sequence[str]) -> _FlWordDict:
    """flashlight Dictionary of LM words; KenLM needs ``<unk>`` in it."""
    from flashlight.lib.text.dictionary import Dictionary

    d = Dictionary()
    for w in words:
        if not d.contains(w):
            d.add_entry(w)
    if not d.contains("<unk>"):
        d.add_entry("<unk>")
    return d


def _lm_misses(lm: _FlLM, word_dict: _FlWordDict, words: Sequence[str], info: LMInfo) -> list[str]:
    """Words the LM does not know (scored as ``<unk>``).

    Exact for ARPA (its unigram list); for a binary LM, a word whose start-of-sentence score is
    bit-identical to ``<unk>``'s is taken as unknown, which is what KenLM does with it.
    """
    if info.vocab is not None:
        return [w for w in words if w not in info.vocab]
    state = lm.start(False)
    _, unk_score = lm.score(state, word_dict.get_index("<unk>"))
    misses = []
    for w in words:
        _, s = lm.score(state, word_dict.get_index(w))
        if s == unk_score:
            misses.append(w)
    return misses


class KenLMDecoder(_FlashlightDecoder):
    """flashlight LexiconDecoder: words from the lexicon, scored by a word n-gram KenLM."""

    def __init__(self, cfg: DecoderConfig, units: UnitDictionary) -> None:
        from flashlight.lib.text.decoder import LexiconDecoder, LexiconDecoderOptions, SmearingMode, Trie

        if not cfg.lm or not cfg.lexicon:
            raise DecodingError("the kenlm decoder needs --lm (word n-gram) and --lexicon; build both with "
                                "'w2v2-lm build CORPUS --dict DICT --out DIR'")
        self.units, self.nbest = units, cfg.nbest
        self.stream_after, self.stream_lookback = cfg.stream_after, cfg.stream_lookback
        self._lm_weight, self._word_score, self._sil_weight = cfg.lm_weight, cfg.word_score, cfg.sil_weight
        _ = units.kind  # raises when the units have no word boundary
        info = inspect_lm(cfg.lm)
        lexicon: Lexicon = load_lexicon(cfg.lexicon, units)
        words = lexicon.words()
        self.word_dict = _word_dictionary(words)
        self.lm = _load_kenlm(cfg.lm, self.word_dict)
        misses = _lm_misses(self.lm, self.word_dict, words, info)
        if len(misses) == len(words):
            raise DecodingError(f"{cfg.lexicon}: none of its {len(words)} words is in the LM {cfg.lm} (e.g. "
                                f"{words[0]!r}); lexicon and LM come from different corpora or casing - build "
                                f"both with 'w2v2-lm build'")
        if misses:
            logger.warning("%d of %d lexicon words are not in the LM %s and score as <unk> (e.g. %s)",
                           len(misses), len(words), cfg.lm, ", ".join(misses[:5]))
        self.trie = Trie(len(units), units.silence)
        start = self.lm.start(False)
        for word, spellings in lexicon.entries.items():
            widx = self.word_dict.get_index(word)
            _, score = self.lm.score(start, widx)
            for spelling in spellings:
                self.trie.insert([units.index(u) for u in spelling], widx, score)
        # Smearing puts on each trie node the best LM score below it, so partial words can be
        # pruned by their most likely completion.
        self.trie.smear(SmearingMode.MAX)
        opts = LexiconDecoderOptions(
            beam_size=cfg.beam, beam_size_token=cfg.beam_size_token or len(units),
            beam_threshold=cfg.beam_threshold, lm_weight=cfg.lm_weight, word_score=cfg.word_score,
            unk_score=cfg.unk_weight, sil_score=cfg.sil_weight, log_add=False, criterion_type=_criterion())
        self._decoder = LexiconDecoder(opts, self.trie, self.lm, units.silence, units.blank,
                                       self.word_dict.get_index("<unk>"), [], False)


class LexiconFreeDecoder(_FlashlightDecoder):
    """flashlight LexiconFreeDecoder: any unit sequence; with no LM, or with a unit-level LM."""

    def __init__(self, cfg: DecoderConfig, units: UnitDictionary) -> None:
        from flashlight.lib.text.decoder import LexiconFreeDecoder as FlLexFree
        from flashlight.lib.text.decoder import LexiconFreeDecoderOptions, ZeroLM

        self.units, self.nbest = units, cfg.nbest
        self.stream_after, self.stream_lookback = cfg.stream_after, cfg.stream_lookback
        self._lm_weight, self._sil_weight = (cfg.lm_weight if cfg.lm else 0.0), cfg.sil_weight
        if cfg.lexicon:
            raise DecodingError("the lexfree decoder takes no --lexicon (use --decoder kenlm for lexicon decoding)")
        if cfg.lm:
            info = inspect_lm(cfg.lm)
            self.word_dict = _word_dictionary(units.symbols)
            self.lm = _load_kenlm(cfg.lm, self.word_dict)
            # A unit LM knows the word-boundary unit(s); a word LM (at most a few one-letter
            # words like "A") does not, and would score every unit as <unk>.
            boundary = [s for s in units.symbols if s == LETTER_BOUNDARY or s.startswith(SP_BOUNDARY)]
            if len(_lm_misses(self.lm, self.word_dict, boundary, info)) == len(boundary):
                raise DecodingError(f"{cfg.lm}: this LM does not know the word-boundary unit(s) of {units.source} "
                                    f"({boundary[0]!r}...): lexfree needs a unit-level LM ('w2v2-lm build "
                                    f"--unit-lm'); a word LM goes with --decoder kenlm")
        else:
            self.lm = ZeroLM()
        opts = LexiconFreeDecoderOptions(
            beam_size=cfg.beam, beam_size_token=cfg.beam_size_token or len(units),
            beam_threshold=cfg.beam_threshold, lm_weight=cfg.lm_weight if cfg.lm else 0.0,
            sil_score=cfg.sil_weight, log_add=False, criterion_type=_criterion())
        self._decoder = FlLexFree(opts, self.lm, units.silence, units.blank, [])


def build_decoder(cfg: DecoderConfig, units: UnitDictionary) -> Decoder:
    """The decoder ``cfg.type`` names, with every input checked first."""
    if cfg.type == "viterbi":
        return ViterbiDecoder(units)
    if cfg.type == "kenlm":
        return KenLMDecoder(cfg, units)
    return LexiconFreeDecoder(cfg, units)
