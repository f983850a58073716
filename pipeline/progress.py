"""Progress bars on stderr: tqdm, drawn only on a terminal (quiet in logs and pipes) and never
with --quiet. Every long step uses this one helper, so they look and behave alike."""
from __future__ import annotations

import sys


def bar(total: int | None, desc: str, unit: str, enabled: bool = True, initial: int = 0):
    from tqdm import tqdm

    # disable=None: tqdm turns itself off when stderr is not a terminal
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled or None,
                file=sys.stderr, leave=False, dynamic_ncols=True)
