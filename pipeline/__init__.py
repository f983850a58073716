"""turnforge data building: schema, readers/writers, stages, runner, CLI."""
import os
import re


def _source_version() -> str:
    """pyproject.toml's version, for a source tree that is not installed."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")
    try:
        with open(path, encoding="utf-8") as f:
            m = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
    except OSError:
        m = None
    return m.group(1) if m else "0.0.0+unknown"


try:
    from importlib.metadata import version as _v

    __version__ = _v("turnforge")
except Exception:  # running from a source tree that is not installed
    __version__ = _source_version()
