"""The stages, by name (docs/design.md#stage-contract)."""
from __future__ import annotations

import importlib

from ..config import ConfigError, did_you_mean

# name -> "module:Class"; imported lazily so a stage's heavy deps load only when it runs.
STAGES = {
    "extract": "pipeline.stages.extract:Extract",
    "quality": "pipeline.stages.quality:Quality",
    "dedup": "pipeline.stages.dedup:Dedup",
    "pii": "pipeline.stages.pii:Pii",
    "topic": "pipeline.stages.topic:Topic",
    "synth": "pipeline.stages.synth:Synth",
}


def get_stage(name: str):
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}{did_you_mean(name, STAGES)}; available: {sorted(STAGES)}")
    mod, cls = STAGES[name].split(":")
    return getattr(importlib.import_module(mod), cls)()
