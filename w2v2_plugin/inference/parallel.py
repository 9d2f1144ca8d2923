"""Decode many utterances in worker processes, each with its own decoder.

flashlight decoders hold C++ state (LM, trie) that cannot be pickled, so each worker builds
its decoder once from the picklable config in its initializer. Work items are emission
``.npy`` paths (workers read them: no large arrays through pipes) or in-memory arrays.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..decoding.decoders import Decoder, DecoderConfig, Hypothesis, build_decoder
from ..decoding.units import UnitDictionary

Item = str | os.PathLike | np.ndarray
_DECODER: Decoder | None = None


def _init(cfg: DecoderConfig, units: UnitDictionary) -> None:
    global _DECODER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _DECODER = build_decoder(cfg, units)


def _work(task: tuple[int, Item]) -> tuple[int, list[Hypothesis]]:
    i, item = task
    if _DECODER is None:  # a bug: _init runs in every worker before its first task
        raise AssertionError("decoder worker used before _init")
    em = item if isinstance(item, np.ndarray) else np.load(item)
    return i, _DECODER.decode(em)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def decode_many(items: Sequence[Item], cfg: DecoderConfig, units: UnitDictionary, workers: int = 1,
                on_done: Callable[[int], None] | None = None) -> list[list[Hypothesis]]:
    """n-best lists for ``items`` (in input order); ``on_done(i)`` after each utterance."""
    results: list[list[Hypothesis] | None] = [None] * len(items)
    tasks = list(enumerate(items))
    if workers <= 1 or len(items) <= 1:
        _init(cfg, units)  # in-process: one decoder
        stream: Iterator[tuple[int, list[Hypothesis]]] = map(_work, tasks)
        for i, hyps in stream:
            results[i] = hyps
            if on_done:
                on_done(i)
    else:
        build_decoder(cfg, units)  # fail here, with one clear error, not once per worker
        # fork: workers inherit the imported modules (no re-import of fairseq/torch per worker)
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        chunksize = max(1, min(16, len(items) // (workers * 8)))
        with ctx.Pool(workers, initializer=_init, initargs=(cfg, units)) as pool:
            for i, hyps in pool.imap_unordered(_work, tasks, chunksize=chunksize):
                results[i] = hyps
                if on_done:
                    on_done(i)
    return [r if r is not None else [] for r in results]
