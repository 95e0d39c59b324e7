"""Test-only seam for subprocesses: installs one fault callback from ``COMPRESS_TEST_FAULT``.

Never shipped or imported by the library. A test that runs the CLI in another process (``compress
train --nproc 2`` and its torchrun workers, ``compress pipeline``) puts this directory first on
``PYTHONPATH``; Python imports ``sitecustomize`` at start-up in every such process, and this one
installs a callback on a :mod:`compress.core.hooks` point::

    COMPRESS_TEST_FAULT='{"point": "train.step", "when": {"step": 14, "rank": 1, "restart": 0}, "do": "kill"}'

``when``: the hook arguments that must all be equal (compared as strings); ``do``: ``kill`` (SIGKILL
this process: a real crash, nothing runs after it), ``raise`` (a RuntimeError naming the point) or
``sleep:SECONDS`` (hold still there, e.g. to hold a lock while another process tries to write).
Without the variable nothing is installed and ``compress`` is not even imported.
"""

from __future__ import annotations

import json
import os
import sys

_SPEC = os.environ.get("COMPRESS_TEST_FAULT")

if _SPEC:
    import signal

    from compress.core import hooks

    _spec = json.loads(_SPEC)
    _when = {k: str(v) for k, v in (_spec.get("when") or {}).items()}

    def _fault(**info: object) -> None:
        if all(str(info.get(k)) == v for k, v in _when.items()):
            do = str(_spec.get("do", "kill"))
            if do == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if do.startswith("sleep:"):
                import time

                print(f"seam: sleeping at {_spec['point']}", file=sys.stderr, flush=True)
                time.sleep(float(do[6:]))
                return
            raise RuntimeError(f"injected fault at {_spec['point']} {_when}")

    hooks.add(_spec["point"], _fault)
