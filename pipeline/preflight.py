"""Whole-config validation of `turnforge build`, before any work (docs/design.md#stage-contract).

A typo under the third stage must not surface only after the first two stages ran for an
hour: every top-level key, input entry, stage name and setting, the mix and engine sections
and every `--set` are checked first, and all problems are reported in one error, each named by
its path in the config (`stages[2].treshold: unknown key; did you mean threshold?`).
"""
from __future__ import annotations

from typing import Any

from .config import ConfigError, closest, config_problems, did_you_mean, unknown_keys
from .engines import ENGINES
from .stages import STAGES, get_stage

# Top-level keys of a build config; `flywheel:` holds the limits `turnforge admit` reads;
# `parquet: true` adds zstd Parquet copies of every shard folder's data (docs/output.md).
TOP_KEYS = ("seed", "rows_per_part", "batch_rows", "inputs", "stages", "mix", "engine", "flywheel", "parquet")
ENGINE_KEYS = ("name", "address")


def check_build(cfg: dict, config_path: str, overrides: dict | None = None) -> None:
    """Raise one ConfigError listing every problem of a build config and its `--set` overrides."""
    overrides = overrides or {}
    bad = unknown_keys(cfg, TOP_KEYS)
    bad += _number_problems(cfg)
    bad += _engine_problems(cfg.get("engine"))
    entries = _entries(cfg)
    names = [n for n, _, _ in entries]
    for k, (name, where, params) in enumerate(entries):
        if name not in STAGES and name != "mix":
            bad.append(f"{where}.name: unknown stage {name!r}{did_you_mean(name, [*STAGES, 'mix'])}")
        elif name == "mix" and k != len(entries) - 1:
            bad.append(f"{where}: mix must be the last stage")
        else:
            bad += _stage_problems(name, where, params, overrides.get(name, {}), cfg)
    bad += _override_problems(overrides, names, [*STAGES, "mix"])
    if bad:
        raise ConfigError(f"{config_path}: {len(bad)} problem(s), nothing was run:\n  " + "\n  ".join(bad))


def _entries(cfg: dict) -> list[tuple[Any, str, dict]]:
    """(stage name, path in the config, its settings) of every stage entry, the mix section last."""
    out = []
    for k, st in enumerate(cfg.get("stages") or []):
        st = {"name": st} if isinstance(st, str) else dict(st) if isinstance(st, dict) else {"name": None}
        out.append((st.pop("name", None), f"stages[{k}]", st))
    if cfg.get("mix") is not None:
        mix = cfg["mix"]
        out.append(("mix", "mix", dict(mix) if isinstance(mix, dict) else {"<not a mapping>": mix}))
    return out


def _number_problems(cfg: dict) -> list[str]:
    bad = []
    for key, low in (("seed", 0), ("rows_per_part", 1), ("batch_rows", 1)):
        v = cfg.get(key, low)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            bad.append(f"{key}: {v!r} must be an integer >= {low}")
    if not isinstance(cfg.get("parquet", False), bool):
        bad.append(f"parquet: {cfg['parquet']!r} must be true or false")
    return bad


def _engine_problems(ec: Any) -> list[str]:
    if ec is None or isinstance(ec, str):
        ec = {"name": ec or "local"}
    if not isinstance(ec, dict):
        return [f"engine: expected a name or {{name, address}}, got {ec!r}"]
    bad = unknown_keys(ec, ENGINE_KEYS, "engine")
    name = ec.get("name", "local")
    if name not in ENGINES:
        bad.append(f"engine.name: {name!r} not in {'|'.join(ENGINES)}{did_you_mean(name, ENGINES)}")
    return bad


def _stage_problems(name: str, where: str, params: dict, sets: dict, cfg: dict) -> list[str]:
    """A stage's own settings at `where.key`, its `--set` overrides at `--set name.key`, then
    what its config's check() rejects in the merged settings."""
    cls, extra = _config_class(name)
    known = [*_fields(cls), *extra]
    bad = unknown_keys(params, known, where) + unknown_keys(sets, known, f"--set {name}")
    merged = {k: v for k, v in {**params, **sets}.items() if k in known and k not in extra}
    if name == "extract":  # its inputs get one problem per entry, the build's `inputs:` by default
        own = "inputs" in merged
        inputs = merged.pop("inputs", cfg.get("inputs") or [])
        bad += _input_problems(inputs, merged.get("format", "auto"), f"{where}.inputs" if own else "inputs")
    return bad + config_problems(cls, merged, where)


def _input_problems(inputs: Any, default_format: str, where: str) -> list[str]:
    from .io.readers import expand_paths
    from .stages.extract import input_problems

    if inputs == []:
        return [f"{where}: no input; list the files to extract (inputs: [{{path: logs/}}])"]
    bad = input_problems(inputs, default_format, where)
    for i, spec in enumerate(inputs if isinstance(inputs, list) else []):
        if isinstance(spec, dict) and spec.get("path"):
            try:
                expand_paths(spec["path"])
            except FileNotFoundError as e:
                bad.append(f"{where}[{i}].path: {e}")
    return bad


def _override_problems(overrides: dict, names: list, known_stages: list) -> list[str]:
    bad = []
    for stage, sets in sorted(overrides.items()):
        for key in sorted(sets):
            if stage not in known_stages:
                bad.append(f"--set {stage}.{key}: unknown stage {stage!r}{did_you_mean(stage, known_stages)}")
            elif stage not in names:
                near = closest(stage, [n for n in names if isinstance(n, str)])
                bad.append(f"--set {stage}.{key}: this build has no {stage} stage"
                           + (f"; did you mean {near}?" if near else f" (stages: {', '.join(map(str, names))})"))
    return bad


def _config_class(name: str) -> tuple[type, tuple]:
    """A stage's config dataclass, and the keys its entry may hold besides the settings."""
    if name == "mix":
        from .stages.mix import MixConfig

        return MixConfig, ("sources",)
    return get_stage(name).Config, ()


def _fields(cls) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(cls)]
