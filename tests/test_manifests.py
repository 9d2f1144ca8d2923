"""w2v2-manifest on synthetic trees: formats, transcript sources, bad files, atomicity.

Every tree is a few dozen tiny files made in tmp_path; fairseq's own example scripts
(wav2vec_manifest.py, libri_labels.py) are the reference for the formats.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
from helpers import write_tone

from w2v2_manifests import BadFilesError, ManifestConfig, ManifestError, TranscriptError, build, scan
from w2v2_manifests import builder as build_mod

FAIRSEQ_W2V = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / \
    "site-packages" / "fairseq" / "examples" / "wav2vec"
WORDS = ["HELLO", "WORLD", "IT'S", "A", "SMALL", "TEST", "OF", "LETTERS", "AND", "SOUNDS"]


def text_for(i: int) -> str:
    return " ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(2 + i % 4))


def make_libri(root: Path, speakers: tuple[str, ...] = ("103", "19"), chapters: tuple[str, ...] = ("1240", "198"),
               utts: int = 3) -> dict[str, str]:
    """LibriSpeech layout: SPK/CHAP/SPK-CHAP-UTT.flac + SPK-CHAP.trans.txt; returns rel -> text."""
    texts: dict[str, str] = {}
    n = 0
    for spk in speakers:
        for chap in chapters:
            lines = []
            for u in range(utts):
                uid = f"{spk}-{chap}-{u:04d}"
                write_tone(root / spk / chap / f"{uid}.flac", 0.2 + 0.01 * n, seed=n)
                texts[f"{spk}/{chap}/{uid}.flac"] = text_for(n)
                lines.append(f"{uid} {text_for(n)}")
                n += 1
            (root / spk / chap / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return texts


def add_trans(root: Path, rel: str, text: str) -> None:
    """Append an entry for audio file ``rel`` to its chapter's trans.txt (made if missing)."""
    spk, chap, name = rel.split("/")
    trans = root / spk / chap / f"{spk}-{chap}.trans.txt"
    with open(trans, "a") as fh:
        fh.write(f"{Path(name).stem} {text}\n")


def cfg(root: Path, dest: Path, **kw: object) -> ManifestConfig:
    kw.setdefault("valid_percent", 0.0)
    kw.setdefault("progress", False)
    return ManifestConfig(root=str(root), dest=str(dest), **kw)  # type: ignore[arg-type]


def read_tsv(path: Path) -> tuple[str, list[tuple[str, int]]]:
    lines = path.read_text().splitlines()
    return lines[0], [(rel, int(n)) for rel, n in (line.split("\t") for line in lines[1:])]


def snapshot(dest: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(dest.iterdir())} if dest.exists() else {}


# ---------------------------------------------------------------------------- formats


def test_librispeech_tree_formats_and_alignment(tmp_path: Path) -> None:
    root, dest = tmp_path / "LS", tmp_path / "out"
    texts = make_libri(root)
    summary = build(cfg(root, dest))
    assert sorted(os.listdir(dest)) == ["dict.ltr.txt", "train.ltr", "train.tsv", "train.wrd"]
    head, rows = read_tsv(dest / "train.tsv")
    assert head == os.path.realpath(root)
    assert [r for r, _ in rows] == sorted(texts)  # every file, walk order = sorted here
    for rel, frames in rows:
        assert frames == sf.info(str(root / rel)).frames
    wrd = (dest / "train.wrd").read_text().splitlines()
    ltr = (dest / "train.ltr").read_text().splitlines()
    assert len(wrd) == len(ltr) == len(rows)
    for (rel, _), w, l in zip(rows, wrd, ltr):
        assert w == texts[rel]
        assert l == " ".join(w.replace(" ", "|")) + " |"  # fairseq's libri_labels.py formula
    counts = Counter(tok for line in ltr for tok in line.split())
    dict_lines = (dest / "dict.ltr.txt").read_text().splitlines()
    assert [f"{s} {c}" for s, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))] == dict_lines
    assert summary.splits[0].files == len(texts) and summary.skipped_files == 0
    assert summary.splits[0].seconds == pytest.approx(sum(f for _, f in rows) / 16000)
    line = summary.line()
    assert "train: 12 files" in line and "skipped 0" in line


def test_matches_fairseq_reference_scripts(tmp_path: Path) -> None:
    """Same rows as fairseq's wav2vec_manifest.py; same .wrd/.ltr bytes as libri_labels.py."""
    if not (FAIRSEQ_W2V / "libri_labels.py").exists():
        pytest.skip("fairseq example scripts not installed")
    root, dest, ref = tmp_path / "LS", tmp_path / "out", tmp_path / "ref"
    make_libri(root)
    build(cfg(root, dest))
    subprocess.run([sys.executable, str(FAIRSEQ_W2V / "wav2vec_manifest.py"), str(root), "--dest", str(ref),
                    "--valid-percent", "0"], check=True, capture_output=True)
    ref_head, ref_rows = read_tsv(ref / "train.tsv")
    head, rows = read_tsv(dest / "train.tsv")
    assert head == ref_head and sorted(rows) == sorted(ref_rows)
    # Feed fairseq our manifest so the line order is the same, then compare labels bytewise.
    subprocess.run([sys.executable, str(FAIRSEQ_W2V / "libri_labels.py"), str(dest / "train.tsv"),
                    "--output-dir", str(ref), "--output-name", "train"], check=True, capture_output=True)
    assert (ref / "train.wrd").read_bytes() == (dest / "train.wrd").read_bytes()
    assert (ref / "train.ltr").read_bytes() == (dest / "train.ltr").read_bytes()


def test_valid_split_draw_is_fairseqs_and_deterministic(tmp_path: Path) -> None:
    root = tmp_path / "LS"
    texts = make_libri(root, utts=5)
    build(cfg(root, tmp_path / "a", valid_percent=0.3, seed=7))
    _, train = read_tsv(tmp_path / "a" / "train.tsv")
    _, valid = read_tsv(tmp_path / "a" / "valid.tsv")
    rand = random.Random(7)
    expect_valid = [rel for rel in sorted(texts) if not rand.random() > 0.3]
    assert [r for r, _ in valid] == expect_valid
    assert sorted(r for r, _ in train + valid) == sorted(texts)
    assert len((tmp_path / "a" / "valid.wrd").read_text().splitlines()) == len(valid)
    # dict comes from train only
    train_counts = Counter(t for line in (tmp_path / "a" / "train.ltr").read_text().splitlines() for t in line.split())
    assert dict(line.rsplit(" ", 1) for line in (tmp_path / "a" / "dict.ltr.txt").read_text().splitlines()) == \
        {k: str(v) for k, v in train_counts.items()}
    build(cfg(root, tmp_path / "b", valid_percent=0.3, seed=8))
    assert (tmp_path / "b" / "valid.tsv").read_bytes() != (tmp_path / "a" / "valid.tsv").read_bytes()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 4 files, so that --workers 2 really uses the process pool on tiny trees."""
    monkeypatch.setattr(scan, "_MAX_CHUNK", 4)


def test_rerun_is_byte_identical_any_worker_count(tmp_path: Path, small_chunks: None) -> None:
    root = tmp_path / "LS"
    make_libri(root, utts=4)
    write_tone(root / "19" / "198" / "19-198-0009.flac", 0.2, sr=8000)  # one skipped file too
    add_trans(root, "19/198/19-198-0009.flac", "X")
    build(cfg(root, tmp_path / "a", valid_percent=0.2, on_bad="skip"))
    first = snapshot(tmp_path / "a")
    build(cfg(root, tmp_path / "a", valid_percent=0.2, on_bad="skip"))
    assert snapshot(tmp_path / "a") == first
    build(cfg(root, tmp_path / "b", valid_percent=0.2, on_bad="skip", workers=2))
    assert snapshot(tmp_path / "b") == first
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]


def test_no_transcripts_gives_manifest_only_and_options(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    for i in range(4):
        write_tone(root / "a" / f"u{i}.wav", 0.1, seed=i)
        write_tone(root / "b" / f"u{i}.flac", 0.1, seed=i)
    write_tone(root / ".hidden" / "x.wav", 0.1)  # hidden: ignored like fairseq's glob
    write_tone(root / "a" / "._u0.wav", 0.1)
    (root / "a" / "U9.WAV").write_bytes((root / "a" / "u0.wav").read_bytes())  # extension case-insensitive
    s = build(cfg(root, tmp_path / "o1", ext="wav,flac"))
    _, rows = read_tsv(tmp_path / "o1" / "train.tsv")
    assert [r for r, _ in rows] == ["a/U9.WAV"] + [f"a/u{i}.wav" for i in range(4)] + [f"b/u{i}.flac" for i in range(4)]
    assert sorted(os.listdir(tmp_path / "o1")) == ["train.tsv"]
    assert s.labels.startswith("none")
    build(cfg(root, tmp_path / "o2", ext="flac", path_must_contain="/b/", split_name="pretrain"))
    _, rows = read_tsv(tmp_path / "o2" / "pretrain.tsv")
    assert [r for r, _ in rows] == [f"b/u{i}.flac" for i in range(4)]
    with pytest.raises(ManifestError, match="no \\*.ogg files"):
        build(cfg(root, tmp_path / "o3", ext="ogg"))
    with pytest.raises(ManifestError, match="fraction between 0 and 1"):
        build(cfg(root, tmp_path / "o3", valid_percent=5))


# ---------------------------------------------------------------------------- sources


@pytest.mark.parametrize("ext,workers", [(".txt", 1), (".lab", 2)])
def test_sidecar_transcripts(tmp_path: Path, ext: str, workers: int, small_chunks: None) -> None:
    root = tmp_path / "corpus"
    for i in range(9):
        write_tone(root / "spk" / f"utt{i}.wav", 0.1, seed=i)
        (root / "spk" / f"utt{i}{ext}").write_text(f"Hello, world number{i}!\nsecond  line\n")
    s = build(cfg(root, tmp_path / "o", ext="wav", workers=workers))
    assert (tmp_path / "o" / "train.wrd").read_text().splitlines() == \
        [f"HELLO WORLD NUMBER{i} SECOND LINE" for i in range(9)]
    assert "labels: 9 from sidecar" in s.line()


def test_sidecar_not_utf8_names_file(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write_tone(root / "utt.wav", 0.1)
    (root / "utt.txt").write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(TranscriptError, match=r"utt\.txt: line 2: not UTF-8"):
        build(cfg(root, tmp_path / "o", ext="wav"))


def test_name_with_tab_is_bad_path(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write_tone(root / "ok.wav", 0.1)
    write_tone(root / "a\tb.wav", 0.1)
    s = build(cfg(root, tmp_path / "o", ext="wav", on_bad="skip"))
    assert (tmp_path / "o" / "train.skipped.tsv").read_text().splitlines()[1] == \
        "a\\tb.wav\tbad_path\tthe name holds a tab or line break, which a .tsv cannot"
    assert s.splits[0].files == 1


def test_transcripts_tsv_with_relative_paths(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    rows = []
    for i in range(4):
        rel = f"d{i % 2}/clip{i}.wav"
        write_tone(root / rel, 0.1, seed=i)
        rows.append(f"{rel if i % 2 else rel[:-4]}\tClip number {i}.")  # with and without extension
    rows.append("d9/missing.wav\tnobody has this")
    table = tmp_path / "t.tsv"
    table.write_text("\n".join(rows) + "\n")
    s = build(cfg(root, tmp_path / "o", ext="wav", transcripts=str(table)))
    _, man = read_tsv(tmp_path / "o" / "train.tsv")
    wrd = (tmp_path / "o" / "train.wrd").read_text().splitlines()
    assert dict(zip((r for r, _ in man), wrd)) == {f"d{i % 2}/clip{i}.wav": f"CLIP NUMBER {i}" for i in range(4)}
    assert s.unused_transcripts == 1
    assert f"1 transcript(s) matched no audio file: d9/missing.wav ({table}:5)" in s.line()


def test_transcripts_csv_with_header_ids_and_quotes(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for i in range(3):
        write_tone(root / "x" / f"id{i}.flac", 0.1, seed=i)
    table = tmp_path / "t.csv"
    table.write_text('file,text\nid0,"one, two"\nid1,three\n' + f"{root}/x/id2.flac,four\n")
    build(cfg(root, tmp_path / "o", transcripts=str(table)))
    assert (tmp_path / "o" / "train.wrd").read_text().splitlines() == ["ONE TWO", "THREE", "FOUR"]


@pytest.mark.parametrize("content,line,match", [
    ("id0\tone\nid1 two\n", 2, "expected 2 tab-separated fields"),
    ("id0\tone\nid0\tagain\n", 2, "already given at line 1"),
    ("id0\tone|two\n", 1, "word-boundary symbol"),
])
def test_transcripts_table_errors_name_line(tmp_path: Path, content: str, line: int, match: str) -> None:
    root = tmp_path / "corpus"
    for i in range(2):
        write_tone(root / f"id{i}.flac", 0.1, seed=i)
    table = tmp_path / "t.tsv"
    table.write_text(content)
    with pytest.raises(TranscriptError, match=match) as err:
        build(cfg(root, tmp_path / "o", transcripts=str(table), punctuation="keep"))
    assert err.value.path == str(table) and err.value.line == line
    assert "\n" not in str(err.value)
    assert not (tmp_path / "o").exists()


def test_transcripts_ambiguous_id(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write_tone(root / "a" / "same.flac", 0.1)
    write_tone(root / "b" / "same.flac", 0.1)
    table = tmp_path / "t.tsv"
    table.write_text("same\ttext\n")
    with pytest.raises(TranscriptError, match="matches both a/same.flac and b/same.flac"):
        build(cfg(root, tmp_path / "o", transcripts=str(table)))


def test_librispeech_duplicate_id_and_digits_policy(tmp_path: Path) -> None:
    root = tmp_path / "LS"
    make_libri(root, speakers=("1",), chapters=("2",), utts=2)
    add_trans(root, "1/2/1-2-0001.flac", "DUPLICATE")
    with pytest.raises(TranscriptError, match=r"1-2\.trans\.txt:3: utterance id '1-2-0001' already given"):
        build(cfg(root, tmp_path / "o"))
    root2 = tmp_path / "LS2"
    make_libri(root2, speakers=("1",), chapters=("2",), utts=1)
    (root2 / "1" / "2" / "1-2.trans.txt").write_text("1-2-0000 ROOM 101\n")
    build(cfg(root2, tmp_path / "o2"))
    assert (tmp_path / "o2" / "train.wrd").read_text() == "ROOM 101\n"
    with pytest.raises(TranscriptError, match=r"1-2\.trans\.txt:1: contains digits \(01\)"):
        build(cfg(root2, tmp_path / "o3", digits="error"))


# ---------------------------------------------------------------------------- bad files

# reason -> how to plant it (into a LibriSpeech tree, as utterance 1/2/1-2-0009)
def _plant(root: Path, reason: str, rel: str = "1/2/1-2-0009.flac") -> str:
    path = root / rel
    if reason == "unreadable":
        path.symlink_to(root / "gone.flac")  # a dangling link: listed, but cannot be opened
    elif reason == "corrupt":
        path.write_bytes(bytes(range(256)) * 8)
    elif reason == "empty":
        path.write_bytes(b"")
    elif reason == "sample_rate":
        write_tone(path, 0.2, sr=8000)
    elif reason == "channels":
        write_tone(path, 0.2, channels=2)
    else:
        write_tone(path, 0.2)
    if reason == "empty_transcript":
        add_trans(root, rel, "...")
    elif reason != "no_transcript":
        add_trans(root, rel, "FINE")
    return rel


BAD_REASONS = ["unreadable", "corrupt", "empty", "sample_rate", "channels", "no_transcript", "empty_transcript"]


@pytest.mark.parametrize("reason", BAD_REASONS)
def test_bad_file_on_bad_error_lists_it_and_writes_nothing(tmp_path: Path, reason: str) -> None:
    root, dest = tmp_path / "LS", tmp_path / "out"
    make_libri(root, speakers=("1",), chapters=("2",), utts=3)
    rel = _plant(root, reason)
    with pytest.raises(BadFilesError) as err:
        build(cfg(root, dest))
    assert err.value.bad == [(rel, err.value.bad[0][1])] and err.value.bad[0][1].startswith(reason + ":")
    assert f"  {rel}: {reason}:" in str(err.value)
    assert not dest.exists()  # not even the directory it would have created


@pytest.mark.parametrize("reason", BAD_REASONS)
def test_bad_file_on_bad_skip_leaves_it_out_and_lists_it(tmp_path: Path, reason: str) -> None:
    root, dest = tmp_path / "LS", tmp_path / "out"
    texts = make_libri(root, speakers=("1",), chapters=("2",), utts=3)
    rel = _plant(root, reason)
    s = build(cfg(root, dest, on_bad="skip"))
    _, rows = read_tsv(dest / "train.tsv")
    assert [r for r, _ in rows] == sorted(texts)
    assert (dest / "train.wrd").read_text().splitlines() == [texts[r] for r in sorted(texts)]
    skipped = (dest / "train.skipped.tsv").read_text().splitlines()
    assert skipped[0] == os.path.realpath(root)
    assert [line.split("\t")[:2] for line in skipped[1:]] == [[rel, reason]]
    assert s.skipped == Counter({reason: 1}) and s.skipped_files == 1
    assert f"skipped 1 ({reason} 1)" in s.line()


def test_planted_faults_every_file_accounted_for(tmp_path: Path, small_chunks: None) -> None:
    """All faults at once, with a valid split and 2 workers: tsv + skipped == every audio file."""
    root, dest = tmp_path / "LS", tmp_path / "out"
    texts = make_libri(root, utts=4)
    planted = {_plant(root, reason, f"103/198/103-198-{20 + i:04d}.flac"): reason
               for i, reason in enumerate(BAD_REASONS)}
    s = build(cfg(root, dest, on_bad="skip", valid_percent=0.25, workers=2))
    listed: dict[str, str] = {}
    for split in ("train", "valid"):
        _, rows = read_tsv(dest / f"{split}.tsv")
        listed.update({r: "ok" for r, _ in rows})
        for line in (dest / f"{split}.skipped.tsv").read_text().splitlines()[1:]:
            rel, code, _detail = line.split("\t")
            assert rel not in listed
            listed[rel] = code
        n = len(rows)
        assert len((dest / f"{split}.wrd").read_text().splitlines()) == n
        assert len((dest / f"{split}.ltr").read_text().splitlines()) == n
    assert listed == {**{r: "ok" for r in texts}, **planted}
    # a transcript whose audio is gone is named too
    os.remove(root / "19" / "1240" / "19-1240-0001.flac")
    s = build(cfg(root, dest, on_bad="skip"))
    assert s.unused_transcripts == 1
    assert f"matched no audio file: 19-1240-0001 ({root / '19' / '1240' / '19-1240.trans.txt'}:2)" in s.line()
    assert s.skipped == Counter(BAD_REASONS) and s.skipped_files == len(BAD_REASONS)


# ---------------------------------------------------------------------------- atomicity


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_interrupted_run_leaves_previous_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 exc: BaseException) -> None:
    root, dest = tmp_path / "LS", tmp_path / "out"
    make_libri(root)
    build(cfg(root, dest))
    before = snapshot(dest)
    write_tone(root / "19" / "198" / "19-198-0007.flac", 0.3)  # the rerun would change outputs
    add_trans(root, "19/198/19-198-0007.flac", "NEW TEXT")
    calls = {"n": 0}
    real = build_mod.to_letters

    def failing(words: str) -> str:
        calls["n"] += 1
        if calls["n"] == 5:  # mid-way through writing the labels
            raise exc
        return real(words)

    monkeypatch.setattr(build_mod, "to_letters", failing)
    with pytest.raises(type(exc)):
        build(cfg(root, dest))
    assert snapshot(dest) == before  # same files, same bytes, no temp files left
    monkeypatch.setattr(build_mod, "to_letters", real)
    with pytest.raises(type(exc)):  # a first run into a new DEST leaves no DEST at all
        monkeypatch.setattr(build_mod, "to_letters", failing)
        calls["n"] = 0
        build(cfg(root, tmp_path / "fresh"))
    assert not (tmp_path / "fresh").exists()


def test_stale_label_files_removed_when_lines_change(tmp_path: Path) -> None:
    root, dest = tmp_path / "LS", tmp_path / "out"
    make_libri(root)
    build(cfg(root, dest))
    (dest / "train.spm").write_text("stale\n")
    build(cfg(root, dest))  # same lines, same words: train.spm still lines up, kept
    assert (dest / "train.spm").exists()
    write_tone(root / "19" / "198" / "19-198-0007.flac", 0.3)
    build(cfg(root, dest, labels="none", on_bad="skip"))  # lines changed, no labels: old ones go
    assert sorted(os.listdir(dest)) == ["dict.ltr.txt", "train.skipped.tsv", "train.tsv"]
    build(cfg(root, dest, labels="none"))  # a run without --on-bad skip: its old report goes
    assert sorted(os.listdir(dest)) == ["dict.ltr.txt", "train.tsv"]


def test_other_split_name_keeps_train_dict_and_reports_unknown_letters(tmp_path: Path) -> None:
    root, dest = tmp_path / "LS", tmp_path / "out"
    make_libri(root)
    build(cfg(root, dest))
    dict_before = (dest / "dict.ltr.txt").read_bytes()
    dev = tmp_path / "dev"
    make_libri(dev, speakers=("7",), chapters=("8",), utts=1)
    (dev / "7" / "8" / "7-8.trans.txt").write_text("7-8-0000 ZEBRA QUIZ\n")
    s = build(cfg(dev, dest, split_name="dev_clean"))
    assert (dest / "dict.ltr.txt").read_bytes() == dict_before
    assert (dest / "dev_clean.ltr").read_text() == "Z E B R A | Q U I Z |\n"
    assert "letter(s) not in dict.ltr.txt" in s.line() and "Q" in s.line()
