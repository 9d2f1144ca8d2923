"""Reading one value from a config of any of the forms fairseq hands the plugin.

A config may be an OmegaConf ``DictConfig`` (hydra runs, checkpoint loads), the dataclass
itself (built in code and tests) or a legacy ``argparse.Namespace`` (old checkpoints): they
differ in how a missing or unresolvable value shows, so every reader goes through
:func:`config_value`.
"""
from __future__ import annotations

from typing import Any


def config_value(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg.key``, or ``default`` where it is missing, None, or an interpolation that cannot be
    resolved (a ``${task.normalize}`` with no task section).

    OmegaConf raises on a key missing from a struct config or an interpolation whose target is
    absent; a dataclass built in code keeps its ``II(...)`` default as the literal ``"${...}"``.
    """
    try:
        value = getattr(cfg, key)
    except Exception:  # noqa: BLE001 - omegaconf's errors for both cases share no base but Exception
        return default
    if value is None or (isinstance(value, str) and value.startswith("${")):
        return default
    return value
