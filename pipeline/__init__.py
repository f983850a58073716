"""turnforge data building: schema, readers/writers, stages, runner, CLI."""
try:
    from importlib.metadata import version as _v

    __version__ = _v("turnforge")
except Exception:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"
