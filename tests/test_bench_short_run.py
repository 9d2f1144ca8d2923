"""benchmarks/bench_short_run.py and the shared report writer, on tiny inputs (no GPU)."""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_short_run as short  # noqa: E402
import common  # noqa: E402


def test_phone_audio_is_deterministic_bounded_and_not_white():
    cpu = torch.device("cpu")
    a, b = short.phone_audio(2, 0.5, 7, cpu), short.phone_audio(2, 0.5, 7, cpu)
    assert a.shape == (2, 8000) and torch.equal(a, b)
    assert not torch.equal(a, short.phone_audio(2, 0.5, 8, cpu))
    assert float(a.abs().max()) <= 0.12
    # tones: neighbouring samples are strongly correlated, unlike white noise
    r = torch.corrcoef(torch.stack([a[0, :-1], a[0, 1:]]))[0, 1]
    assert float(r) > 0.5


def test_run_arm_repeats_exactly_and_trains_a_copy():
    args = argparse.Namespace(seed=1, updates=3, lr=5e-4, lr_warmup=2)
    cpu = torch.device("cpu")
    pool = [short.phone_audio(1, 0.5, i, cpu) for i in range(2)]
    _, model = common.build_pretrain_pair("tiny_cpu", 1)
    start = [p.detach().clone() for p in model.parameters()]
    runs, arms = [], []
    for _ in range(2):
        arm = copy.deepcopy(model).train()
        losses, _ = short.run_arm(arm, pool, args, "fp32", cpu)
        runs.append(losses)
        arms.append(arm)
    assert len(runs[0]) == 3 and all(x == x and x > 0 for x in runs[0])
    assert runs[0] == runs[1]  # same seed, same batches: the same curve
    # the optimizer stepped: the trained copy's weights moved away from the start
    assert any(not torch.equal(p, q) for p, q in zip(start, arms[0].parameters(), strict=True))
    # each arm trains a copy: the shared starting weights stay as they were
    assert all(torch.equal(p, q) for p, q in zip(start, model.parameters(), strict=True))
    assert short.windows([1.0, 2.0, 3.0, 4.0, 5.0], 2) == [1.5, 3.5, 5.0]


def test_largest_relative_gap():
    assert short.largest_relative_gap([4.0, 2.0], [4.0, 2.0]) == 0.0
    assert short.largest_relative_gap([4.0, 2.0], [4.2, 1.9]) == pytest.approx(0.05)


def test_print_report_writes_the_timings_to_json(tmp_path, capsys):
    times = common.Timings(wall={"a": [0.1, 0.2]}, cpu={"a": [0.1, 0.2]})
    rows = common.summarize(times)
    path = tmp_path / "r.json"
    machine = common.machine_info("cpu")
    common.print_report("t", rows, [("x", 1.5, None)], machine, json_path=str(path), times=times)
    out = json.loads(path.read_text())
    assert out["times"]["wall"] == {"a": [0.1, 0.2]}
    assert "RATIO x: 1.50x" in capsys.readouterr().out
