"""Configuration shared by every layer: the error type a bad setting raises, typed configs
from dictionaries (unknown keys and wrong values named), and `--set key=value` parsing."""
from __future__ import annotations

import dataclasses
from typing import Any

import yaml


class ConfigError(ValueError):
    pass


def make_config(cls, values: dict[str, Any]):
    """Build a stage config dataclass, naming unknown keys and wrong types clearly."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown setting(s) {unknown}; known: {sorted(names)}")
    cfg = cls(**values)
    if hasattr(cfg, "check"):
        cfg.check()
    return cfg


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs; values are read as YAML scalars/lists (3, 0.5, true, [a, b])."""
    out: dict[str, Any] = {}
    for p in pairs or []:
        if "=" not in p:
            raise ConfigError(f"--set {p!r}: expected key=value")
        k, v = p.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v) if v != "" else ""
        except yaml.YAMLError:
            out[k.strip()] = v
    return out


def load_config(path: str) -> dict:
    """A build config (YAML): a `stages:` list and/or a `mix:` section."""
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    if not isinstance(cfg, dict) or not isinstance(cfg.get("stages", []), list) \
            or not (cfg.get("stages") or cfg.get("mix")):
        raise ConfigError(f"{path}: needs a `stages:` list (e.g. - name: extract) and/or a `mix:` section")
    return cfg
