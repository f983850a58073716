"""Configuration shared by every layer: the error type a bad setting raises, typed configs
from dictionaries (unknown keys and wrong values named), and `--set key=value` parsing."""
from __future__ import annotations

import dataclasses
import difflib
import textwrap
from typing import Any

import yaml


class ConfigError(ValueError):
    pass


def closest(key: Any, known) -> str | None:
    """The known name a mistyped one most likely meant, if any is close."""
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
    return close[0] if close else None


def did_you_mean(key: Any, known) -> str:
    c = closest(key, known)
    return f"; did you mean {c}?" if c else ""


def unknown_keys(values: dict, known, where: str = "") -> list[str]:
    """One problem per key of `values` not in `known`, named by its path (`where.key`)."""
    return [f"{where + '.' if where else ''}{k}: unknown key{did_you_mean(k, known)}"
            for k in sorted(values, key=str) if k not in known]


def config_problems(cls, values: dict[str, Any], where: str) -> list[str]:
    """Every problem of `values` as settings of the dataclass `cls`, each named by its path:
    unknown keys (with the closest known name), then what the config's check() rejects."""
    names = [f.name for f in dataclasses.fields(cls)]
    bad = unknown_keys(values, names, where)
    try:
        cfg = cls(**{k: v for k, v in values.items() if k in names})
        if hasattr(cfg, "check"):
            cfg.check()
    except (ConfigError, TypeError, ValueError) as e:  # TypeError: a value of the wrong type
        bad.append(f"{where}: {e}")
    return bad


def make_config(cls, values: dict[str, Any]):
    """Build a stage config dataclass, naming unknown keys and wrong types clearly."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        hints = "".join(f" ({k}: did you mean {c}?)" for k in unknown for c in [closest(k, names)] if c)
        raise ConfigError(f"{cls.__name__}: unknown setting(s) {unknown}{hints}; known: {sorted(names)}")
    cfg = cls(**values)
    if hasattr(cfg, "check"):
        cfg.check()
    return cfg


def settings_help(cls, stage: str) -> str:
    """The settings of a config dataclass as `turnforge stage NAME --help` lists them: name,
    type, default and the comment the source gives it (on its line, or the lines above)."""
    rows = [(f.name, f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type)),
             repr(_default(f)), _comments(cls).get(f.name, "")) for f in dataclasses.fields(cls)]
    width = min(40, max(len(f"{n}: {t} = {d}") for n, t, d, _ in rows))
    lines = [textwrap.fill(c, 110, initial_indent=f"  {f'{n}: {t} = {d}':<{width}}  ",
                           subsequent_indent=" " * (width + 4)) if c else f"  {n}: {t} = {d}"
             for n, t, d, c in rows]
    return (f"{stage} settings (`--set KEY=VALUE` with `turnforge stage`, `--set {stage}.KEY=VALUE` or a config "
            f"entry with `turnforge build`; docs/stages/{stage}.md):\n" + "\n".join(lines))


def _default(f) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _comments(cls) -> dict[str, str]:
    """field -> its comment in the class source: `name: type = value  # comment`, else the
    comment lines right above the field."""
    import inspect
    import re

    out, above = {}, []
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("# "))
            continue
        m = re.match(r"(\w+)\s*:[^#]*?(?:#\s*(.*))?$", text)
        if m and not text.startswith(("def ", "class ", "@")):
            out[m.group(1)] = m.group(2) or " ".join(above)
        above = []
    return out


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
