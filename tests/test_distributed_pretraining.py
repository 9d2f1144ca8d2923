"""Two CPU ranks of fairseq-hydra-train (gloo, legacy_ddp) end with identical parameters.

fairseq saves checkpoints on rank 0 only, so the ranks run fairseq-hydra-train's own entry
point through a small launcher that, whenever fairseq saves, also dumps the rank's model
parameters. This is the path that needs the criterion's summable logging outputs: fairseq
would otherwise gather its statistics through CUDA.
"""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pretraining_corpus import CONFIG_DIR, FAST, USER_DIR, corpus, env, records  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

LAUNCHER = '''
import os, sys, torch
from fairseq import checkpoint_utils
from fairseq_cli import hydra_train

_save = checkpoint_utils.save_checkpoint

def save_and_dump(cfg, trainer, epoch_itr, val_loss):
    out = _save(cfg, trainer, epoch_itr, val_loss)
    params = {k: v.detach().cpu().clone() for k, v in trainer.get_model().state_dict().items()}
    torch.save(params, os.path.join(os.environ["W2V2_DUMP_DIR"],
               f"rank{trainer.data_parallel_rank}_update{trainer.get_num_updates()}.pt"))
    return out

checkpoint_utils.save_checkpoint = save_and_dump
sys.argv[0] = "fairseq-hydra-train"
hydra_train.cli_main()
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_cpu_ranks_end_with_identical_parameters(corpus: Path, tmp_path: Path) -> None:  # noqa: F811
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    port = _free_port()
    procs = []
    for rank in range(2):
        cmd = [sys.executable, str(launcher), "--config-dir", str(CONFIG_DIR), "--config-name", "tiny_cpu",
               f"task.data={corpus}", f"common.user_dir={USER_DIR}", f"checkpoint.save_dir={tmp_path}/ckpt",
               f"hydra.run.dir={tmp_path}/hydra{rank}", *FAST,
               "optimization.max_update=4", "checkpoint.save_interval_updates=2", "common.log_interval=1",
               "dataset.disable_validation=true",
               "distributed_training.distributed_world_size=2", f"distributed_training.distributed_rank={rank}",
               "distributed_training.distributed_backend=gloo", "distributed_training.ddp_backend=legacy_ddp",
               f"distributed_training.distributed_init_method=tcp://127.0.0.1:{port}",
               "distributed_training.distributed_no_spawn=true"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env={**env(), "W2V2_DUMP_DIR": str(dumps)}, cwd=str(tmp_path)))
    logs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=400)
            logs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log[-4000:]
    assert "distributed init (rank 1)" in logs[1] or "distributed init (rank 1)" in logs[0]

    for update in (2, 4):
        a = torch.load(dumps / f"rank0_update{update}.pt")
        b = torch.load(dumps / f"rank1_update{update}.pt")
        assert a.keys() == b.keys() and len(a) > 10
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, different[:5]
    before, after = torch.load(dumps / "rank0_update2.pt"), torch.load(dumps / "rank0_update4.pt")
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it did train in between

    # rank 0 logs the statistics of both ranks: sentences per update add up across ranks
    inner = records(logs[0])
    assert [r["num_updates"] for r in inner] == [1, 2, 3, 4]
    assert all(r["nsentences"] >= 2 and 0 <= r["accuracy"] <= 1 for r in inner)
