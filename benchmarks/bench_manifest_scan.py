"""Header scan speed of w2v2-manifest against one sequential pass of soundfile.info.

Makes its own LibriSpeech-shaped synthetic tree in a temp dir (speaker/chapter/utt.flac,
short clips), then times, alternating, with the files in the page cache:

- baseline: ``soundfile.info(path).frames`` for every file, one after another;
- scan:     manifests' walk + header probe with ``--workers`` processes (what the CLI does
            before writing), checked to give exactly soundfile's frame counts;
- cli:      the whole ``build`` (manifest written, labels off), for reference.

Prints the median time of each and the ratio baseline/scan (the issue asks >= 1.5 with
--workers 2). First, one full build runs in a fresh process to report its peak memory
(max RSS of it and its workers): compare --files 10000 and 100000 to see it stay bounded.

    python benchmarks/bench_manifest_scan.py                 # 3000 files, 2 workers
    python benchmarks/bench_manifest_scan.py --files 100000 --clip-ms 50 --memory-only
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from w2v2_manifests import ManifestConfig, build  # noqa: E402
from w2v2_manifests.scan import parse_exts, probe_files, walk  # noqa: E402


def make_tree(root: Path, files: int, ext: str, clip_ms: int = 500) -> None:
    """``files`` clips of 1-2.75x ``clip_ms``; a few distinct encodings copied around (fast to make)."""
    templates = []
    rng = np.random.default_rng(0)
    for k in range(8):
        buf = io.BytesIO()
        n = clip_ms * 16 * (4 + k) // 4
        sf.write(buf, (0.1 * rng.standard_normal(n)).astype(np.float32), 16000,
                 format="FLAC" if ext == "flac" else "WAV", subtype="PCM_16")
        templates.append(buf.getvalue())
    per_chapter = 50
    for i in range(files):
        spk, chap = i // (per_chapter * 10), (i // per_chapter) % 10
        d = root / str(spk) / str(chap)
        if i % per_chapter == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"{spk}-{chap}-{i % per_chapter:04d}.{ext}").write_bytes(templates[i % len(templates)])


def baseline(files: list[str]) -> int:
    return sum(sf.info(f).frames for f in files)


def scan(root: str, ext: str, workers: int) -> int:
    listing = walk(root, parse_exts(ext))
    return sum(r.info.frames for r in probe_files(root, listing.files, workers=workers))


def build_peak_rss(root: str, dest: str, ext: str, workers: int) -> tuple[float, float]:
    """Run one full build in a fresh process; (seconds, peak RSS in MiB of it and its workers)."""
    code = ("import sys; from w2v2_manifests import ManifestConfig, build; "
            f"print(build(ManifestConfig(root={root!r}, dest={dest!r}, ext={ext!r}, valid_percent=0.0, "
            f"labels='none', workers={workers}, progress=False)).line())")
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=str(Path(__file__).resolve().parents[1]),
                            stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, "the build failed"
    # ru_maxrss of wait4 covers the child and the workers it waited for (KiB on Linux)
    return time.perf_counter() - t, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ext", default="flac", choices=("flac", "wav"))
    ap.add_argument("--clip-ms", type=int, default=500, help="shortest clip; use ~50 for 100k-file trees")
    ap.add_argument("--memory-only", action="store_true",
                    help="skip the timings: one build in a fresh process, report its peak memory")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "tree")
        t0 = time.perf_counter()
        make_tree(Path(root), args.files, args.ext, args.clip_ms)
        print(f"made {args.files} {args.ext} files in {time.perf_counter() - t0:.1f} s under {root}")
        secs, rss = build_peak_rss(root, os.path.join(tmp, "mem"), args.ext, args.workers)
        print(f"full build in a fresh process: {secs:.2f} s, peak RSS {rss:.0f} MiB "
              f"(largest of the main process and its {args.workers} workers)")
        if args.memory_only:
            return
        files = sorted(str(p) for p in Path(root).rglob(f"*.{args.ext}"))
        expect = baseline(files)  # also warms the page cache
        times: dict[str, list[float]] = {"baseline": [], "scan": [], "cli": []}
        for r in range(args.repeats):
            t = time.perf_counter()
            assert baseline(files) == expect
            times["baseline"].append(time.perf_counter() - t)
            t = time.perf_counter()
            got = scan(root, args.ext, args.workers)
            times["scan"].append(time.perf_counter() - t)
            assert got == expect, f"frame total {got} != soundfile's {expect}"
            t = time.perf_counter()
            build(ManifestConfig(root=root, dest=os.path.join(tmp, f"out{r}"), ext=args.ext, valid_percent=0.0,
                                 labels="none", workers=args.workers, progress=False))
            times["cli"].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"files={args.files} workers={args.workers} repeats={args.repeats} cpus={os.cpu_count()} "
              f"load={os.getloadavg()[0]:.1f}")
        print(f"soundfile.info sequential: {med['baseline']:.3f} s  ({args.files / med['baseline']:.0f} files/s)")
        print(f"manifest header scan:      {med['scan']:.3f} s  ({args.files / med['scan']:.0f} files/s)")
        print(f"manifest full build:       {med['cli']:.3f} s")
        print(f"ratio soundfile.info / scan (workers={args.workers}): {med['baseline'] / med['scan']:.2f}x; "
              f"/ full build: {med['baseline'] / med['cli']:.2f}x")


if __name__ == "__main__":
    main()
