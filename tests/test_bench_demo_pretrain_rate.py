"""benchmarks/bench_demo_pretrain_rate.py without training: the arms share the demo's command and
differ only in the settings they name."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_demo_pretrain_rate as rate  # noqa: E402


def test_arms_differ_only_in_their_overrides(tmp_path):
    cmds = {arm: rate.train_command(tmp_path, tmp_path / "save", 50, 3, a) for arm, a in rate.ARMS.items()}
    own = {arm: set(a.settings().split()) for arm, a in rate.ARMS.items()}
    shared = [set(c) - own[arm] for arm, c in cmds.items()]
    assert all(s == shared[0] for s in shared)
    assert all(own[arm] <= set(c) for arm, c in cmds.items())
    assert "optimization.max_update=50" in shared[0] and "common.seed=3" in shared[0]
    assert "dataset.disable_validation=true" in shared[0]
    assert "dataset.max_tokens=192000" in cmds["old-demo"] and "++task.precision=bf16" in cmds["demo-bf16"]


def test_the_demo_arm_runs_the_demos_own_pretraining_overrides(tmp_path):
    """One builder for the demo and the benchmark: the demo's schedule (warm-up, decay length,
    batch) reaches the benchmark's command unchanged, only max_update is the benchmark's."""
    from examples.demo.run import DEFAULT, pretrain_overrides

    cmd = rate.train_command(tmp_path, tmp_path / "save", 50, 3, rate.ARMS["demo"])
    demo = pretrain_overrides(DEFAULT)
    assert [o for o in demo if not o.startswith("optimization.max_update=")] == \
        [o for o in pretrain_overrides(DEFAULT, 50) if not o.startswith("optimization.max_update=")]
    assert set(pretrain_overrides(DEFAULT, 50)) <= set(cmd)
    assert f"++lr_scheduler.total_num_update={DEFAULT.pretrain_updates}" in cmd


def test_profile_counts_self_time_by_innermost_frame(tmp_path):
    import profile_real_run as prof

    raw = tmp_path / "raw.txt"
    raw.write_text("main (train.py:1);step (trainer.py:9);_engine_run_backward (graph.py:8) 30\n"
                   "main (train.py:1);step (trainer.py:9);forward (conv.py:3) 10\n"
                   "worker (torch/utils/data/_utils/worker.py:2);read (soundfile.py:5) 10\n"
                   "not a sample line\n")
    samples = prof.read_samples(raw)
    counts, total = prof.leaf_counts(samples)
    assert total == 50
    assert counts.most_common(1) == [("_engine_run_backward (graph.py:8)", 30)]
    assert prof.stack_share(samples, ("_engine_run_backward",)) == 30
    assert prof.stack_share(samples, prof.DATA_PATH_FILES) == 10
