"""Synthetic "speakers": an espeak-ng voice (accent) x variant (timbre), a rate and a pitch.

Train, dev and test get disjoint voice x variant pairs, as LibriSpeech's dev/test speakers are
not in its training set; a seed fixes which pairs and which rates and pitches.
"""
from __future__ import annotations

import itertools
import random
from typing import NamedTuple

# English voices that ship with espeak-ng (the mbrola ones need extra packages: left out).
VOICES: tuple[str, ...] = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan",
                           "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# Human-sounding variants (no whisper, robot or croak ones): male m1-m7, female f1-f5, and
# a few named ones.
VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4",
                             "f5", "adam", "andy", "annie", "aunty", "benjamin", "david", "ed",
                             "linda", "max", "michael", "paul", "rob", "steph", "john")
RATE_RANGE = (135, 185)   # espeak-ng -s, words per minute (its default is 175)
PITCH_RANGE = (30, 70)    # espeak-ng -p, 0-99 (default 50)


class Speaker(NamedTuple):
    id: int          # LibriSpeech-style numeric speaker id
    voice: str       # e.g. "en-gb-x-rp+f3"
    rate: int
    pitch: int

    def espeak_args(self) -> list[str]:
        return ["-v", self.voice, "-s", str(self.rate), "-p", str(self.pitch)]


def make_speakers(n_train: int, n_dev: int, n_test: int, seed: int = 0
                  ) -> dict[str, list[Speaker]]:
    """Disjoint speaker sets {'train', 'dev', 'test'}; deterministic for ``seed``."""
    pairs = list(itertools.product(VOICES, VARIANTS))
    total = n_train + n_dev + n_test
    if total > len(pairs):
        raise ValueError(f"{total} speakers asked for but only {len(pairs)} voice x variant "
                         "pairs exist; ask for fewer speakers")
    rng = random.Random(seed)
    rng.shuffle(pairs)
    out: dict[str, list[Speaker]] = {}
    start = 0
    for split, n, base in (("train", n_train, 100), ("dev", n_dev, 800), ("test", n_test, 900)):
        group = []
        for k, (voice, variant) in enumerate(pairs[start:start + n]):
            group.append(Speaker(id=base + k, voice=f"{voice}+{variant}",
                                 rate=rng.randint(*RATE_RANGE), pitch=rng.randint(*PITCH_RANGE)))
        out[split] = group
        start += n
    return out
