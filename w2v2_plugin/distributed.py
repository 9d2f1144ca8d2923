"""Which process of a distributed job this is, for output only one of them should give."""
from __future__ import annotations


def is_main_process() -> bool:
    """True outside a distributed job and on its rank 0 (progress bars, summaries)."""
    try:
        import torch.distributed as dist

        return not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)
    except Exception:  # noqa: BLE001 - a broken or missing torch.distributed: act as a single process
        return True
