"""``w2v2-manifest lhotse``: lhotse manifests of a synthesized corpus become fairseq manifests.

The corpus (built in each test's tmp_path): a mono recording with three supervisions that
cover parts of it, a stereo file whose supervisions pick a channel, a two-file recording (one
mono file per channel), a mono file that one supervision covers whole (used in place), and a
recording no supervision names.
"""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import write_tone

from w2v2_manifests import BadFilesError, LhotseConfig, ManifestError, build_lhotse, lhotse_input
from w2v2_manifests.cli import main

lhotse = pytest.importorskip("lhotse")
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet  # noqa: E402

SR = 16000
# id, recording, start, duration, channel, text
SUPS = [
    ("long-a", "long", 0.0, 1.0, 0, "Hello, world!"),
    ("long-b", "long", 1.25, 0.75, 0, "a cat"),
    ("long-c", "long", 2.1, 0.8, 0, "the dog’s bone"),
    ("st-right", "stereo", 0.5, 1.0, 1, "on the right"),
    ("st-left", "stereo", 0.0, 2.0, 0, "left side"),
    ("two-1", "twofile", 0.0, 1.5, 1, "second file"),
    ("whole-x", "whole", 0.0, 1.0, 0, "whole file"),
]
# utterance -> path in the .tsv (relative to the root, tmp_path) for the default layout
PATHS = {
    "long-a": "out/segments/train/long/long-a.flac",
    "long-b": "out/segments/train/long/long-b.flac",
    "long-c": "out/segments/train/long/long-c.flac",
    "st-right": "out/segments/train/stereo/st-right.flac",
    "st-left": "out/segments/train/stereo/st-left.flac",
    "two-1": "audio/twofile_ch1.flac",  # the whole of the file holding channel 1: in place
    "whole-x": "audio/whole.flac",
}
WORDS = {"long-a": "HELLO WORLD", "long-b": "A CAT", "long-c": "THE DOG'S BONE", "st-right": "ON THE RIGHT",
         "st-left": "LEFT SIDE", "two-1": "SECOND FILE", "whole-x": "WHOLE FILE"}


def noise(seconds: float, seed: int) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal(int(round(seconds * SR)))).astype(np.float32)


def make_corpus(tmp: Path, sups=SUPS, extra_recordings=()) -> tuple[Path, Path]:
    """Audio under tmp/audio; returns the (recordings, supervisions) .jsonl.gz paths."""
    audio = tmp / "audio"
    write_tone(audio / "long.wav", 3.0, seed=1)
    stereo = np.stack([noise(2.0, 2), noise(2.0, 3)], axis=1)  # different content per channel
    sf.write(str(audio / "stereo.flac"), stereo, SR, subtype="PCM_16")
    write_tone(audio / "twofile_ch0.flac", 1.5, seed=4)
    write_tone(audio / "twofile_ch1.flac", 1.5, seed=5)
    write_tone(audio / "whole.flac", 1.0, seed=6)
    write_tone(audio / "nosup.flac", 0.5, seed=7)
    recs = [Recording.from_file(audio / f) for f in ("long.wav", "stereo.flac", "whole.flac", "nosup.flac")]
    ch0, ch1 = (Recording.from_file(audio / f"twofile_ch{c}.flac") for c in (0, 1))
    recs.append(Recording(id="twofile", sources=[lhotse.AudioSource("file", [0], str(audio / "twofile_ch0.flac")),
                                                 lhotse.AudioSource("file", [1], str(audio / "twofile_ch1.flac"))],
                          sampling_rate=SR, num_samples=ch0.num_samples, duration=ch0.duration))
    recs.extend(extra_recordings)
    rec_path, sup_path = tmp / "recordings.jsonl.gz", tmp / "supervisions.jsonl.gz"
    RecordingSet.from_recordings(recs).to_file(rec_path)
    SupervisionSet.from_segments(
        SupervisionSegment(id=i, recording_id=r, start=s, duration=d, channel=c, text=t)
        for i, r, s, d, c, t in sups).to_file(sup_path)
    return rec_path, sup_path


def cfg(dest: Path, **kw) -> LhotseConfig:
    kw.setdefault("valid_percent", 0.0)
    kw.setdefault("progress", False)
    return LhotseConfig(dest=str(dest), **kw)


def tsv(dest: Path, split: str = "train") -> tuple[str, list[tuple[str, int]]]:
    lines = (dest / f"{split}.tsv").read_text().splitlines()
    return lines[0], [(p, int(n)) for p, n in (line.split("\t") for line in lines[1:])]


def source_samples(tmp: Path, sup: tuple) -> np.ndarray:
    """What the segment of ``sup`` must hold: the original int16 samples of its channel."""
    key, rec, start, dur, ch, _ = sup
    name = {"long": "long.wav", "stereo": "stereo.flac"}[rec]
    data, sr = sf.read(str(tmp / "audio" / name), dtype="int16", always_2d=True)
    first = lhotse.utils.compute_num_samples(start, sr)
    return data[first:first + lhotse.utils.compute_num_samples(dur, sr), ch]


def tree(dest: Path) -> dict[str, bytes]:
    """Every file under dest, hidden temporary ones included, with its bytes."""
    out = {}
    for dirpath, _dirs, files in os.walk(dest):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(dest))] = p.read_bytes()
    return out


FRAMES = {"long-a": 16000, "long-b": 12000, "long-c": 12800, "st-right": 16000, "st-left": 32000,
          "two-1": 24000, "whole-x": 16000}


def check_outputs(tmp: Path, dest: Path, ordered: bool = True) -> None:
    """The corpus's manifest: paths, frame counts, words and letters line by line, segment
    samples. ``ordered``: in supervision order (a CutSet has its own order)."""
    root, rows = tsv(dest)
    assert root == str(tmp)
    expected = [(PATHS[k], FRAMES[k]) for k, *_ in SUPS]
    assert rows == expected if ordered else sorted(rows) == sorted(expected)
    words = (dest / "train.wrd").read_text().splitlines()
    letters = (dest / "train.ltr").read_text().splitlines()
    by_path = {p: k for k, p in PATHS.items()}
    assert words == [WORDS[by_path[p]] for p, _ in rows]
    assert letters == [" ".join(w.replace(" ", "|")) + " |" for w in words]
    assert letters[rows.index((PATHS["long-c"], 12800))] == "T H E | D O G ' S | B O N E |"
    assert (dest / "dict.ltr.txt").read_text().splitlines()[0].startswith("| ")
    for sup in SUPS:
        path = Path(root) / PATHS[sup[0]]
        info = sf.info(str(path))
        assert info.samplerate == SR and info.channels == 1
        if sup[1] in ("long", "stereo"):  # a segment: exactly the supervision's samples, its channel
            got, _ = sf.read(str(path), dtype="int16")
            np.testing.assert_array_equal(got, source_samples(tmp, sup))


# ---------------------------------------------------------------------------- formats


def test_recordings_and_supervisions(tmp_path: Path) -> None:
    rec, sup = make_corpus(tmp_path)
    dest = tmp_path / "out"
    s = build_lhotse(cfg(dest, recordings=str(rec), supervisions=str(sup)))
    check_outputs(tmp_path, dest)
    line = s.line()
    assert line.startswith("train: 7 files, 0.00 h | skipped 0 | labels: 7 from supervisions")
    assert "audio: 2 file(s) used in place, 5 segment(s) in " in line
    assert "1 recording(s) without supervision left out: nosup" in line
    assert sorted(os.listdir(dest)) == ["dict.ltr.txt", "segments", "train.ltr", "train.tsv", "train.wrd"]
    # stereo: the right channel's segment is not the left one's
    right, _ = sf.read(str(tmp_path / PATHS["st-right"]), dtype="int16")
    left, _ = sf.read(str(tmp_path / PATHS["st-left"]), dtype="int16")
    assert not np.array_equal(right, left[8000:24000])
    # same input, same bytes
    before = tree(dest)
    build_lhotse(cfg(dest, recordings=str(rec), supervisions=str(sup)))
    assert tree(dest) == before


def test_cuts_give_the_same_manifest(tmp_path: Path) -> None:
    rec, sup = make_corpus(tmp_path)
    cuts = CutSet.from_manifests(RecordingSet.from_file(rec), SupervisionSet.from_file(sup))
    # lhotse orders a cut's supervisions by its own rules: compare per utterance
    expected = {PATHS[k]: WORDS[k] for k, *_ in SUPS}
    for name, cutset in (("whole", cuts), ("trimmed", cuts.trim_to_supervisions(keep_overlapping=False))):
        path = tmp_path / f"cuts_{name}.jsonl.gz"
        cutset.to_file(path)
        dest = tmp_path / "out"
        s = build_lhotse(cfg(dest, cuts=str(path)))
        root, rows = tsv(dest)
        got = dict(zip((p for p, _ in rows), (dest / "train.wrd").read_text().splitlines()))
        assert root == str(tmp_path) and got == expected, name
        assert "labels: 7 from cuts" in s.line() and s.skipped_files == 0
        # the recording without supervision is a cut without supervision: left out, named
        assert ("1 cut(s) without supervision left out: nosup" in s.line()) == (name == "whole")
        check_outputs(tmp_path, dest, ordered=False)


def test_cut_supervision_in_several_cuts_is_written_once(tmp_path: Path) -> None:
    rec, sup = make_corpus(tmp_path)
    cuts = CutSet.from_manifests(RecordingSet.from_file(rec), SupervisionSet.from_file(sup))
    # st-right also lies in st-left's cut (another channel: a MultiCut)
    trimmed = cuts.trim_to_supervisions(keep_overlapping=True, keep_all_channels=True)
    path = tmp_path / "cuts.jsonl"
    trimmed.to_file(path)
    s = build_lhotse(cfg(tmp_path / "out", cuts=str(path)))
    assert "held by several cuts, written once" in s.line()
    check_outputs_like = dict(tsv(tmp_path / "out")[1])
    assert check_outputs_like[PATHS["st-right"]] == 16000 and len(check_outputs_like) == 7


def test_recordings_alone_are_unlabeled_utterances(tmp_path: Path) -> None:
    rec, _ = make_corpus(tmp_path)
    dest = tmp_path / "out"
    s = build_lhotse(cfg(dest, recordings=str(rec), on_bad="skip"))
    root, rows = tsv(dest)
    # mono files in place; the 3 s wav too (whole); the stereo one has no supervision to pick a channel
    assert sorted(rows) == [("long.wav", 48000), ("nosup.flac", 8000), ("whole.flac", 16000)]
    assert root == str(tmp_path / "audio")
    assert s.skipped == {"channels": 2}  # stereo.flac, and twofile (two sources, two channels)
    assert "labels: none (no --supervisions)" in s.line()
    assert not (dest / "train.wrd").exists() and not (dest / "segments").exists()


def test_valid_split_draw(tmp_path: Path) -> None:
    rec, sup = make_corpus(tmp_path)
    dest = tmp_path / "out"
    build_lhotse(cfg(dest, recordings=str(rec), supervisions=str(sup), valid_percent=0.5, seed=3))
    _, train = tsv(dest)
    _, valid = tsv(dest, "valid")
    assert len(train) + len(valid) == 7 and train and valid
    assert len((dest / "valid.wrd").read_text().splitlines()) == len(valid)
    # segments of both splits live in the run's folder (named after the main split)
    assert all(p.startswith(("out/segments/train/", "audio/")) for p, _ in train + valid)


# ---------------------------------------------------------------------------- bad input


def test_bad_utterances_listed_or_skipped(tmp_path: Path) -> None:
    r8k = tmp_path / "audio" / "r8k.wav"
    write_tone(r8k, 1.0, sr=8000, seed=9)
    bad = [("out-of-range", "long", 2.5, 1.0, 0, "too far"), ("no-rec", "ghost", 0.0, 1.0, 0, "who"),
           ("both-ch", "stereo", 0.0, 1.0, [0, 1], "both"), ("no-text", "long", 0.1, 0.3, 0, None),
           ("blank", "long", 0.4, 0.3, 0, " ?! "), ("eight-k", "r8k", 0.0, 1.0, 0, "slow"),
           ("bad-ch", "long", 0.0, 1.0, 3, "which")]
    rec, sup = make_corpus(tmp_path, sups=SUPS + bad, extra_recordings=[Recording.from_file(r8k)])
    dest = tmp_path / "out"
    with pytest.raises(BadFilesError) as e:
        build_lhotse(cfg(dest, recordings=str(rec), supervisions=str(sup)))
    msg = str(e.value).splitlines()
    assert msg[0].startswith(f"7 bad utterance(s) in {sup}; nothing was written")
    assert msg[1] == (f"  out-of-range ({sup}:8): bad_segment: 2.500-3.500 s is outside recording 'long' (0-3.000 s)")
    assert msg[2] == f"  no-rec ({sup}:9): no_recording: recording 'ghost' is not in {rec}"
    assert "channels: on channels [0, 1]" in msg[3] and "no_transcript: the supervision has no text" in msg[4]
    assert "empty_transcript" in msg[5] and "sample_rate: 8000 Hz, expected 16000" in msg[6]
    assert "bad_segment: channel 3 is not one of the channels [0] of recording 'long'" in msg[7]
    assert not dest.exists()

    s = build_lhotse(cfg(dest, recordings=str(rec), supervisions=str(sup), on_bad="skip"))
    assert s.skipped_files == 7
    assert "skipped 7 (no_recording 1, bad_segment 2, sample_rate 1, channels 1, no_transcript 1, " \
           "empty_transcript 1)" in s.line()
    check_outputs(tmp_path, dest)  # the good ones as before
    skipped = (dest / "train.skipped.tsv").read_text().splitlines()
    assert skipped[0] == str(tmp_path) and skipped[1].startswith(f"out-of-range ({sup}:8)\tbad_segment\t")
    assert not (dest / "segments" / "train" / "long" / "out-of-range.flac").exists()


@pytest.mark.parametrize("kind", ["command", "url"])
@pytest.mark.parametrize("form", ["recordings", "cuts"])
def test_command_and_url_sources_are_refused(tmp_path: Path, kind: str, form: str) -> None:
    marker = tmp_path / "MARKER"
    source = (f"touch {marker}; sox -n -r 16000 -c 1 -t wav - trim 0 1" if kind == "command"
              else "http://127.0.0.1:9/x.wav")
    planted = Recording(id="planted", sources=[lhotse.AudioSource(kind, [0], source)], sampling_rate=SR,
                        num_samples=SR, duration=1.0)
    rec, sup = make_corpus(tmp_path, sups=SUPS + [("p1", "planted", 0.0, 1.0, 0, "boom")],
                           extra_recordings=[planted])
    dest = tmp_path / "out"
    if form == "cuts":
        cuts = tmp_path / "cuts.jsonl.gz"
        CutSet.from_manifests(RecordingSet.from_file(rec), SupervisionSet.from_file(sup)).to_file(cuts)
        args = ["--cuts", str(cuts)]
    else:
        args = ["--recordings", str(rec), "--supervisions", str(sup)]
    with pytest.raises(ManifestError, match=rf"recording 'planted' has an audio source of type '{kind}', refused"):
        build_lhotse(cfg(dest, **{k.lstrip("-"): v for k, v in zip(args[::2], args[1::2])}))
    assert not marker.exists() and not dest.exists()
    rc = main(["lhotse", *args, "--dest", str(dest), "--no-progress"])
    assert rc == 2 and not marker.exists() and not dest.exists()


@pytest.mark.parametrize("suffix", [".sph", ".SPH", ".opus"])
@pytest.mark.parametrize("form", ["recordings", "cuts"])
def test_file_names_lhotse_would_paste_into_a_shell_are_refused(tmp_path: Path, suffix: str, form: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """lhotse reads .sph through ``sph2pipe ... PATH`` (and .opus, with its ffmpeg-subprocess backend,
    through ``ffmpeg -i 'PATH'``) in a shell: a ``file`` source named to break out of that command
    line is a command source in disguise. A supervision on part of it would be decoded by lhotse."""
    marker = tmp_path / "MARKER"
    name = (f"{tmp_path}/x'; touch {marker}; echo '{suffix}" if suffix == ".opus"
            else f"{tmp_path}/x; touch {marker}; #{suffix}")
    planted = Recording(id="planted", sources=[lhotse.AudioSource("file", [0], name)], sampling_rate=SR,
                        num_samples=2 * SR, duration=2.0)
    rec, sup = make_corpus(tmp_path, sups=SUPS + [("p1", "planted", 0.5, 1.0, 0, "boom")],
                           extra_recordings=[planted])
    if form == "cuts":
        cuts = tmp_path / "cuts.jsonl.gz"
        CutSet.from_manifests(RecordingSet.from_file(rec), SupervisionSet.from_file(sup)).to_file(cuts)
        kw = {"cuts": str(cuts)}
    else:
        kw = {"recordings": str(rec), "supervisions": str(sup)}
    if suffix == ".opus":  # the backend a user selects with LHOTSE_AUDIO_BACKEND (the default reads opus itself)
        monkeypatch.setenv("LHOTSE_AUDIO_BACKEND", "FfmpegSubprocessOpusBackend")
    monkeypatch.setattr(lhotse.audio.backend, "CURRENT_AUDIO_BACKEND", None)  # rebuilt from the env
    dest = tmp_path / "out"
    with pytest.raises(ManifestError, match=r"recording 'planted': lhotse reads its file .* through a shell"):
        build_lhotse(cfg(dest, on_bad="skip", **kw))
    assert not marker.exists() and not dest.exists()


@pytest.mark.parametrize("name", ["http://127.0.0.1:9/x.wav", "concat:/a.wav|/b.wav"])
def test_file_sources_named_like_urls_are_refused(tmp_path: Path, name: str) -> None:
    """A ``file`` source named like a URL would be fetched by lhotse's ffmpeg-based readers."""
    planted = Recording(id="planted", sources=[lhotse.AudioSource("file", [0], name)], sampling_rate=SR,
                        num_samples=2 * SR, duration=2.0)
    rec, sup = make_corpus(tmp_path, sups=SUPS + [("p1", "planted", 0.5, 1.0, 0, "boom")],
                           extra_recordings=[planted])
    with pytest.raises(ManifestError, match=r"recording 'planted': its file source .* is a URL or protocol"):
        build_lhotse(cfg(tmp_path / "out", recordings=str(rec), supervisions=str(sup), on_bad="skip"))
    assert not (tmp_path / "out").exists()


def test_plain_sph_names_are_read(tmp_path: Path) -> None:
    """NIST SPHERE files with ordinary names (TED-LIUM, Switchboard) are not refused."""
    sph = tmp_path / "audio" / "talk_01-a.sph"
    sph.parent.mkdir(parents=True)
    sf.write(str(sph), noise(1.0, 11), SR, format="NIST", subtype="PCM_16")
    rec = Recording(id="talk_01-a", sources=[lhotse.AudioSource("file", [0], str(sph))], sampling_rate=SR,
                    num_samples=SR, duration=1.0)  # (Recording.from_file would need sph2pipe)
    RecordingSet.from_recordings([rec]).to_file(tmp_path / "r.jsonl.gz")
    build_lhotse(cfg(tmp_path / "out", recordings=str(tmp_path / "r.jsonl.gz")))
    assert tsv(tmp_path / "out") == (str(sph.parent), [("talk_01-a.sph", SR)])


def test_malformed_manifests_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec, sup = make_corpus(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "recording_id": "long", "start": 0}\n')
    cases = [
        (["--recordings", str(sup)], f"{sup}:1: not a lhotse recording, it has no 'sources' (the line is a supervision"),
        (["--recordings", str(rec), "--supervisions", str(bad)], f"{bad}:1: not a lhotse supervision, it has no 'duration'"),
        (["--recordings", str(rec), "--supervisions", str(rec)], f"{rec}:1: a recording, not a supervision"),
        (["--cuts", str(rec)], f"{rec}:1: a recording, not a cut"),
        (["--supervisions", str(sup)], "give --recordings FILE"),
        (["--recordings", str(tmp_path / "nope.jsonl")], "nope.jsonl: --recordings file not found"),
    ]
    for args, needle in cases:
        rc = main(["lhotse", *args, "--dest", str(tmp_path / "o"), "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ") and needle in err, (args, err)
    dup = tmp_path / "dup.jsonl.gz"
    with gzip.open(dup, "wt") as fh:
        for line in gzip.open(sup, "rt").read().splitlines()[:2] * 2:
            fh.write(line + "\n")
    with pytest.raises(ManifestError, match=r"dup.jsonl.gz:3: supervision id 'long-a' again \(first at line 1\)"):
        build_lhotse(cfg(tmp_path / "o", recordings=str(rec), supervisions=str(dup)))


# ---------------------------------------------------------------------------- atomicity


def test_rerun_replaces_segments_and_interruption_leaves_previous(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rec, sup = make_corpus(tmp_path)
    dest = tmp_path / "out"
    build_lhotse(cfg(dest, recordings=str(rec), supervisions=str(sup)))
    before = tree(dest)
    # a rerun that fails half-way through the segments leaves every file as it was
    real = lhotse_input._write_segment
    calls = {"n": 0}

    def failing(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt()
        return real(*a, **kw)

    monkeypatch.setattr(lhotse_input, "_write_segment", failing)
    fewer = tmp_path / "fewer.jsonl.gz"
    SupervisionSet.from_segments([s for s in SupervisionSet.from_file(sup) if s.id != "long-b"]).to_file(fewer)
    with pytest.raises(KeyboardInterrupt):
        build_lhotse(cfg(dest, recordings=str(rec), supervisions=str(fewer)))
    assert tree(dest) == before
    calls["n"] = 0  # a first run into a new DEST leaves no DEST at all
    with pytest.raises(KeyboardInterrupt):
        build_lhotse(cfg(tmp_path / "fresh", recordings=str(rec), supervisions=str(sup)))
    assert not (tmp_path / "fresh").exists()
    monkeypatch.setattr(lhotse_input, "_write_segment", real)
    # the rerun that succeeds: long-b's segment is gone with its line
    build_lhotse(cfg(dest, recordings=str(rec), supervisions=str(fewer)))
    assert not (dest / "segments" / "train" / "long" / "long-b.flac").exists()
    assert len(tsv(dest)[1]) == 6
    # a run with no segment at all removes the segment folder
    only_whole = tmp_path / "whole.jsonl.gz"
    SupervisionSet.from_segments([s for s in SupervisionSet.from_file(sup) if s.id == "whole-x"]).to_file(only_whole)
    build_lhotse(cfg(dest, recordings=str(rec), supervisions=str(only_whole)))
    assert tsv(dest) == (str(tmp_path / "audio"), [("whole.flac", 16000)])
    assert not (dest / "segments").exists()
    assert not [n for n in os.listdir(dest) if n.startswith(".")]


def test_without_lhotse_one_line_error(tmp_path: Path) -> None:
    """The lhotse form imports lhotse (and so torch) itself; without it, one line says what to install."""
    from test_manifests_cli import REPO

    rec, sup = make_corpus(tmp_path)
    code = ("import sys, runpy; sys.modules['torch'] = None; sys.modules['lhotse'] = None; "
            "sys.argv = ['w2v2-manifest'] + sys.argv[1:]; runpy.run_module('w2v2_manifests', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code, "lhotse", "--recordings", str(rec), "--dest",
                           str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: w2v2-manifest lhotse needs lhotse (") and "[lhotse]" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_ids_become_safe_file_names() -> None:
    assert lhotse_input.safe_name("103-1240-0000") == "103-1240-0000"
    assert lhotse_input.safe_name("a/b") == "a%2Fb"
    assert lhotse_input.safe_name("..") == "%2E."
    assert lhotse_input.safe_name("") == "%"
    long = lhotse_input.safe_name("x" * 300)
    assert len(long) < 200 and long != lhotse_input.safe_name("x" * 301)


# ---------------------------------------------------------------------------- it trains


def test_manifest_loads_in_the_finetuning_task(tmp_path: Path) -> None:
    from test_finetuning_task import make_task

    rec, sup = make_corpus(tmp_path)
    dest = tmp_path / "out"
    build_lhotse(cfg(dest, recordings=str(rec), supervisions=str(sup)))
    task = make_task(dest)  # reads every header and checks the labels against the dictionary
    task.load_dataset("train")
    ds = task.datasets["train"]
    assert len(ds) == 7
    batch = ds.collater([ds[i] for i in range(len(ds))])
    assert batch["net_input"]["source"].shape == (7, 32000)  # the longest: st-left, 2 s
    sizes = sorted(int(n) for n in (~batch["net_input"]["padding_mask"]).sum(1))
    assert sizes == sorted([16000, 12000, 12800, 16000, 32000, 24000, 16000])
    d = task.target_dictionary
    texts = {d.string(ds[i]["label"]) for i in range(len(ds))}
    assert "H E L L O | W O R L D |" in texts and "S E C O N D | F I L E |" in texts
    # the segment's samples are what the model reads (normalize=false: raw float)
    i = next(i for i in range(len(ds)) if int(ds.sizes[i]) == 12000)
    expected = source_samples(tmp_path, SUPS[1]).astype(np.float32) / 32768
    np.testing.assert_allclose(ds[i]["source"].numpy(), expected, atol=1e-6)


def test_manifest_trains_under_fairseq_hydra_train(tmp_path: Path) -> None:
    from test_conversion_ctc import save_fairseq_wav2vec2
    from test_finetuning_e2e import logged
    from test_finetuning_train import hydra_train

    rec, sup = make_corpus(tmp_path)
    dest = tmp_path / "out"
    build_lhotse(cfg(dest, recordings=str(rec), supervisions=str(sup)))
    pre = save_fairseq_wav2vec2(tmp_path / "pre.pt")
    res = hydra_train("tiny_cpu", tmp_path / "ckpt", f"task.data={dest}", f"model.w2v_path={pre}",
                      "dataset.valid_subset=train", "optimization.max_update=2", "common.log_interval=1",
                      "model.mask_channel_length=8", "model.freeze_finetune_updates=1",
                      "checkpoint.no_save=true", "dataset.validate_interval_updates=2", timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert [r["num_updates"] for r in logged(out, "train_inner")] == ["1", "2"]
    assert all(r["nsentences"] == "7" for r in logged(out, "train_inner"))  # all 7 utterances in the batch
    # validation on the same subset (logged under its name): WER computed on the lhotse labels
    assert any("train_wer" in r for r in logged(out, "train"))


def test_resampled_by_lhotse_become_16k_segments(tmp_path: Path) -> None:
    """The README's advice for other rates: lhotse's resample transform, then segments at 16 kHz."""
    r8k = tmp_path / "audio" / "r8k.wav"
    write_tone(r8k, 1.0, sr=8000, seed=9)
    recs = tmp_path / "r8k.jsonl.gz"
    RecordingSet.from_recordings([Recording.from_file(r8k)]).to_file(recs)
    with pytest.raises(BadFilesError, match="sample_rate: 8000 Hz, expected 16000"):
        build_lhotse(cfg(tmp_path / "out", recordings=str(recs)))
    resampled = tmp_path / "r16k.jsonl.gz"
    lhotse.load_manifest(recs).resample(16000).to_file(resampled)
    build_lhotse(cfg(tmp_path / "out", recordings=str(resampled)))
    root, rows = tsv(tmp_path / "out")
    assert rows == [("r8k/r8k.flac", 16000)] and root == str(tmp_path / "out" / "segments" / "train")
    assert sf.info(os.path.join(root, "r8k/r8k.flac")).samplerate == 16000
