"""The built wheel works outside the checkout: package data, the compress.export namespace, the CLI.

The wheel is built from a copy of the sources (nothing is written into the checkout), installed
with ``--no-deps`` into a fresh virtual environment, and every command runs from an empty
temporary directory. The heavy pinned dependencies come from this interpreter's site-packages
through a ``.pth`` file (the equivalent of ``--system-site-packages`` for a development venv);
``compress`` itself only from the wheel - the tests assert where each module and data file was
loaded from.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("compress", "export", "hardware_profiles")
TOP_FILES = ("pyproject.toml", "README.md")


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd} exited {res.returncode}:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools in this environment")
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.search-cache", "*.egg-info")
    for name in SOURCES:
        shutil.copytree(REPO / name, src / name, ignore=junk)
    for name in TOP_FILES:
        shutil.copy2(REPO / name, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            str(src),
            "-w",
            str(root / "dist"),
        ],
        cwd=root,
        env=env,
    )
    (whl,) = (root / "dist").glob("compress-*.whl")

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root, env=env)
    py = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index", str(whl)],
        cwd=root,
        env=env,
    )
    # the heavy dependencies: this interpreter's site-packages, after the venv's own (which holds compress)
    venv_site = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=root, env=env
        ).stdout.strip()
    )
    (venv_site / "_compress_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    work = root / "empty"
    work.mkdir()
    run_env = {
        **env,
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "XDG_CACHE_HOME": str(root / "cache"),
        "COLUMNS": "200",
    }
    run_env.pop("COMPRESS_PROFILES", None)
    run_env.pop("COMPRESS_TABLES", None)
    return {"whl": whl, "venv": venv, "py": py, "site": venv_site, "cwd": work, "env": run_env}


def test_wheel_contents(installed):
    names = zipfile.ZipFile(installed["whl"]).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"compress", "compress-0.1.0.dist-info"}  # no top-level export or hardware_profiles
    data = sorted(
        p.relative_to(REPO / "hardware_profiles").as_posix() for p in (REPO / "hardware_profiles").rglob("*.yaml")
    )
    assert data and {f"compress/hardware_profiles/{p}" for p in data} <= set(
        names
    )  # profiles, published rows, calibrations
    assert "compress/supernet/default/supernet.safetensors" in names
    assert {
        "compress/export/__init__.py",
        "compress/export/runtimes/ort.py",
        "compress/export/bundle/build_engine.py",
    } <= set(names)


def test_installed_package_finds_its_data(installed):
    code = (
        "import importlib.util, json, compress, compress.export.formats as f, compress.export.runtimes as r\n"
        "from compress.hardware.profile import builtin_profiles_dir\n"
        "from compress.supernet import default_checkpoint_path\n"
        "print(json.dumps({'compress': compress.__file__, 'formats': f.__file__, 'runtimes': r.__file__,\n"
        "  'profiles': str(builtin_profiles_dir()), 'supernet': str(default_checkpoint_path()),\n"
        "  'export_top': importlib.util.find_spec('export') is not None}))"
    )
    got = json.loads(_run([str(installed["py"]), "-c", code], cwd=installed["cwd"], env=installed["env"]).stdout)
    assert got.pop("export_top") is False
    site_dir = installed["site"].resolve()
    for key, path in got.items():
        assert site_dir in Path(path).resolve().parents, f"{key} came from {path}, not from the installed wheel"


def test_installed_cli_devices_and_info(installed):
    cli, cwd, env = str(installed["venv"] / "bin" / "compress"), installed["cwd"], installed["env"]
    devs = json.loads(_run([cli, "devices", "--json"], cwd=cwd, env=env).stdout)
    names = {d["name"] for d in devs}
    assert {p.stem for p in (REPO / "hardware_profiles").glob("*.yaml")} <= names

    ckpt = _run(
        [str(installed["py"]), "-c", "from compress.supernet import default_checkpoint_path as d; print(d())"],
        cwd=cwd,
        env=env,
    ).stdout.strip()
    info = json.loads(_run([cli, "info", "--json", ckpt], cwd=cwd, env=env).stdout)
    assert info["num_subnets"] > 1 and info["family"]
    assert list(cwd.iterdir()) == []  # read-only commands leave the working directory alone


@pytest.mark.slow
def test_installed_cli_search_and_export(installed):
    """Search on the embedded supernet (small predictor/evolution budget) and an ONNX export with parity."""
    cli, cwd, env = str(installed["venv"] / "bin" / "compress"), installed["cwd"], installed["env"]
    res = json.loads(
        _run(
            [
                cli,
                "search",
                "--device",
                "local-cpu",
                "--pareto",
                "--predictor-samples",
                "10",
                "--predictor-val-images",
                "64",
                "--predictor-calib-images",
                "64",
                "--population",
                "8",
                "--generations",
                "2",
                "--out",
                "search",
                "--json",
            ],
            cwd=cwd,
            env=env,
        ).stdout
    )
    assert (cwd / "search" / "result.json").is_file() and res
    ex = json.loads(
        _run([cli, "export", "timm:resnet18", "--format", "onnx", "--out", "r18", "--json"], cwd=cwd, env=env).stdout
    )
    assert ex["passed"] is True
    assert (cwd / "r18" / "model.onnx").is_file()
