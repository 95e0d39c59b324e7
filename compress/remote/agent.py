"""Run the benchmark agent on a remote device: copy, run, fetch, clean up.

The device needs Python 3, numpy and its runtime; nothing of ``compress`` has to be installed
there. A minimal bundle (the timing engine, the agent, the device-state probes, the vendor-tool
wrappers and the shared runners of ``compress.export.runtimes``) travels with the artefacts into a
``mktemp -d`` directory, which is removed afterwards even when the run fails.

>>> res = run_agent(RemoteHost("me@jetson"), items=[{"name": "m", "artifact": Path("m.onnx"),
...                 "runtime": "onnxruntime"}], timing=TimingConfig())   # doctest: +SKIP
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from compress.bench.timing import TimingConfig
from compress.core.errors import Failure, UsageError
from compress.export.runtimes import kind_of
from compress.remote.ssh import RemoteHost

_ROOT = Path(__file__).resolve().parents[2]
# real modules shipped as they are (paths relative to the repository / site-packages root)
_SHIPPED = (
    "compress/core/errors.py",
    "compress/core/registry.py",
    "compress/bench/timing.py",
    "compress/bench/agent.py",
    "compress/bench/device_state.py",
    "compress/bench/vendor.py",
)
# package __init__ files replaced by empty ones, so the bundle never pulls in heavier imports
_EMPTY_INITS = (
    "compress/__init__.py",
    "compress/core/__init__.py",
    "compress/bench/__init__.py",
    "compress/export/__init__.py",
)


def agent_bundle(workdir: Path) -> dict[str, Path]:
    """Files (remote relative name -> local path) that make ``python -m compress.bench.agent`` run."""
    files: dict[str, Path] = {}
    for rel in _SHIPPED:
        p = _ROOT / rel
        if not p.is_file():
            raise Failure(f"cannot build the remote agent bundle: {p} is missing from this installation")
        files[f"pkg/{rel}"] = p
    import compress.export.runtimes as rts

    rdir = Path(rts.__file__).parent
    for p in sorted(rdir.glob("*.py")):
        files[f"pkg/compress/export/runtimes/{p.name}"] = p
    for rel in _EMPTY_INITS:
        q = workdir / "inits" / rel
        q.parent.mkdir(parents=True, exist_ok=True)
        q.write_text('"""compress agent bundle."""\n__version__ = "agent"\n')
        files[f"pkg/{rel}"] = q
    return files


def run_agent(
    host: RemoteHost,
    *,
    items: Sequence[dict[str, Any]],
    timing: TimingConfig,
    canary: Path | None = None,
    canary_runtime: str | None = None,
    fallback: bool = True,
    samples: bool = False,
    seed: int = 0,
    timeout: float = 1800.0,
    keep: bool = False,
    mode: str = "interleaved",
    skip_errors: bool = False,
) -> dict[str, Any]:
    """Time ``items`` on ``host`` with the agent; returns the agent's result dict.

    Each item is ``{"name", "artifact": Path, "runtime", "precision", "threads", "batch", "device",
    "options"}``; artefact files are copied (an OpenVINO ``.xml`` takes its ``.bin`` along).
    ``mode="stream"`` times items one after another with the canary every ``timing.canary_every``
    items (latency tables); ``skip_errors`` then records per-item load errors in ``errors``.
    """
    if not items:
        raise UsageError("nothing to benchmark remotely")
    with tempfile.TemporaryDirectory(prefix="compress-agent-") as td:
        work = Path(td)
        files = agent_bundle(work)
        spec_items = []
        for k, it in enumerate(items):
            art = Path(it["artifact"])
            if not art.is_file():
                raise UsageError(f"artefact not found: {art}")
            rel = f"art{k}/{art.name}"
            files[rel] = art
            kind = kind_of(art)  # files that travel with it (an OpenVINO IR's .bin), as its runtime declares
            for side in [art.with_suffix(c) for c in kind.companions] if kind is not None else []:
                if not side.is_file():
                    raise UsageError(f"{kind.noun} {art.name} has no {side.name} beside it")
                files[f"art{k}/{side.name}"] = side
            data = art.with_name(art.name + ".data")
            if data.is_file():  # ONNX external data
                files[f"art{k}/{data.name}"] = data
            spec_items.append({**{k2: v for k2, v in it.items() if k2 != "artifact"}, "artifact": rel})
        spec: dict[str, Any] = {
            "schema": 1,
            "items": spec_items,
            "timing": asdict(timing),
            "fallback": fallback,
            "samples": samples,
            "seed": seed,
            "canary": None,
            "mode": mode,
            "skip_errors": skip_errors,
        }
        if canary is not None:
            files[f"canary/{canary.name}"] = canary
            spec["canary"] = {
                "artifact": f"canary/{canary.name}",
                "runtime": canary_runtime,
                "threads": items[0].get("threads"),
            }  # the canary runs like the items
        (work / "spec.json").write_text(json.dumps(spec, indent=1))
        files["spec.json"] = work / "spec.json"
        with host.tempdir(keep=keep) as rdir:
            host.put(files, rdir)
            res = host.run(
                [
                    host.python,
                    "-m",
                    "compress.bench.agent",
                    "--spec",
                    f"{rdir}/spec.json",
                    "--out",
                    f"{rdir}/result.json",
                ],
                env={"PYTHONPATH": f"{rdir}/pkg", "PYTHONDONTWRITEBYTECODE": "1"},
                timeout=timeout,
                check=False,
            )
            if res.returncode == 255:
                raise host._fail(res, "the agent")
            raw = host.run(["cat", "--", f"{rdir}/result.json"], timeout=120, check=False)
            if raw.returncode != 0:
                err = res.stderr.decode(errors="replace").strip().splitlines()
                raise Failure(
                    f"the benchmark agent failed on {host.target} (exit {res.returncode}): "
                    f"{err[-1] if err else 'no output'}; does the device have {host.python} and numpy?"
                )
    try:
        result = json.loads(raw.stdout)
    except json.JSONDecodeError:
        raise Failure(f"the benchmark agent on {host.target} wrote an unreadable result") from None
    if "error" in result:
        cls = UsageError if res.returncode == 2 else Failure
        raise cls(f"on {host.target}: {result['error']}")
    result["remote"] = {"target": host.target, "python": host.python}
    return result
