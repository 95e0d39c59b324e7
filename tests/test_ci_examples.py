"""The CI examples (examples/ci/*.yml) pass on a fresh runner.

Fast (``make test``): every workflow validates against the GitHub Actions / GitLab CI schema that
the ``check-jsonschema`` package vendors ([dev] extra; offline), and every job installs the package
and the dataset its pipeline needs before it runs the pipeline (hosted jobs with the lock file, the
Jetson jobs keeping JetPack's torch: docs/install.md).

Slow (``-m slow``): each hosted example's ``run:``/``script:`` lines, in order, in a fresh clone and a
fresh venv, with no dataset present (``COMPRESS_FASHION_MNIST_DIR`` points at an empty directory;
the job's ``apt-get install`` is served by ``apt-get download`` + ``dpkg -x`` of the same Debian
package into that directory, so a job without the dataset step fails). ``uses:`` steps are
emulated (checkout = the clone, the container image = the fresh venv) or skipped with a reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CI = REPO / "examples/ci"
GITHUB = ["github-actions.yml", "github-actions-jetson.yml"]
GITLAB = ["gitlab-ci.yml"]
DATASET_INSTALL = {  # dataset -> a command line that installs it
    "fashion-mnist": re.compile(r"apt-get install\b.*\bdataset-fashion-mnist"),
    "digits": re.compile(r"pip install\b.*\[(all|data)"),
    "mnist5k": re.compile(r"pip install\b.*\[(all|data)"),
}


def _jobs(name: str) -> dict[str, dict]:
    """job name -> {"lines": [command lines in order], "hosted": bool}."""
    doc = yaml.safe_load((CI / name).read_text())
    out = {}
    if name in GITHUB:
        for job, spec in doc["jobs"].items():
            lines = []
            for st in spec["steps"]:
                # the local runner emulates a push to main: steps only for pull requests are skipped
                if "run" in st and "pull_request" not in str(st.get("if", "")):
                    lines += [ln for ln in st["run"].splitlines() if ln.strip()]
            runs_on = spec["runs-on"]
            out[job] = {
                "lines": lines,
                "hosted": "self-hosted" not in (runs_on if isinstance(runs_on, list) else [runs_on]),
            }
    else:
        for job, spec in doc.items():
            if not isinstance(spec, dict) or "script" not in spec:
                continue
            lines = [
                ln
                for item in [*spec.get("before_script", []), *spec["script"]]
                for ln in item.splitlines()
                if ln.strip()
            ]
            out[job] = {"lines": lines, "hosted": "tags" not in spec}
    return out


def _check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema is in the [dev] extra (make setup installs it)")
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", GITHUB + GITLAB)
def test_workflow_matches_its_schema(name):
    schema = "vendor.github-workflows" if name in GITHUB else "vendor.gitlab-ci"
    r = _check_jsonschema(schema, CI / name)
    assert r.returncode == 0, r.stdout + r.stderr


def test_schema_check_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text((CI / "github-actions.yml").read_text().replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest"))
    assert _check_jsonschema("vendor.github-workflows", bad).returncode != 0
    bad.write_text((CI / "gitlab-ci.yml").read_text().replace("when: always", "when: sometimes", 1))
    assert _check_jsonschema("vendor.gitlab-ci", bad).returncode != 0


@pytest.mark.parametrize("name", GITHUB + GITLAB)
def test_every_job_installs_what_its_pipeline_needs_first(name):
    jobs = _jobs(name)
    assert jobs
    for job, spec in jobs.items():
        lines = spec["lines"]
        pipes = [i for i, ln in enumerate(lines) if re.search(r"compress pipeline \S+\.yaml", ln)]
        if not pipes:
            continue
        first = pipes[0]
        cfg = yaml.safe_load((REPO / re.search(r"compress pipeline (\S+\.yaml)", lines[first]).group(1)).read_text())
        data = (cfg.get("data") or {}).get("name", "fashion-mnist")
        pat = DATASET_INSTALL[data]
        inst = [i for i, ln in enumerate(lines) if pat.search(ln)]
        assert inst and inst[0] < first, f"{name}:{job}: no step installs the {data} dataset before `compress pipeline`"
        pip = [i for i, ln in enumerate(lines) if "pip install" in ln]
        assert pip and pip[0] < first, f"{name}:{job}: the package is not installed before the pipeline"
        pip_line = lines[pip[0]]
        if spec["hosted"]:  # the exact tested stack
            assert "-c .ci/constraints.txt" in pip_line, f"{name}:{job}: install with the lock file: {pip_line}"
        else:  # on the board: JetPack's torch kept (docs/install.md, recipe b)
            assert ".ci/constraints.txt" not in pip_line, f"{name}:{job}: the lock would replace JetPack's torch"
            assert any("--system-site-packages" in ln for ln in lines[:first])
            assert "-c jetpack-pins.txt" in pip_line
        assert any("--check-only" in lines[i] for i in pipes), f"{name}:{job}: no preflight step"


# ---- the full local runner (slow: installs the whole stack and runs the pipeline) --------------------


def _emulate_apt(bin_dir: Path, root: Path, cache: Path) -> None:
    """`apt-get`/`sudo` on PATH: install = download the real .deb and unpack it under ``root``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_dir / "apt-get").write_text(f"""#!/bin/bash
set -e
[ "$1" = update ] && exit 0
[ "$1" = install ] || exec /usr/bin/apt-get "$@"
shift
for p in "$@"; do
  case "$p" in -*) continue;; esac
  deb=$(ls {cache}/"$p"_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then (cd {cache} && /usr/bin/apt-get download -qq "$p" >/dev/null 2>&1); deb=$(ls {cache}/"$p"_*.deb | head -1); fi
  dpkg -x "$deb" {root}
done
""")
    (bin_dir / "dpkg").write_text(f"""#!/bin/bash
# `dpkg -s PKG`: installed when unpacked under the emulated root
if [ "$1" = -s ]; then ls {root}/usr/share/datasets >/dev/null 2>&1; exit $?; fi
exec /usr/bin/dpkg "$@"
""")
    for f in ("sudo", "apt-get", "dpkg"):
        (bin_dir / f).chmod(0o755)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_hosted_example_passes_on_a_fresh_runner(name, tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)  # the job's container image: a bare Python
    root, cache = tmp_path / "root", tmp_path / "debs"
    cache.mkdir()
    _emulate_apt(tmp_path / "fakebin", root, cache)
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'fakebin'}:{venv / 'bin'}:{os.environ['PATH']}",
        "COMPRESS_FASHION_MNIST_DIR": str(root / "usr/share/datasets/fashion-mnist"),
        "OMP_NUM_THREADS": "1",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "PYTHONPATH": "",
        "VIRTUAL_ENV": str(venv),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    jobs = {j: s for j, s in _jobs(name).items() if s["hosted"]}
    assert jobs
    for job, spec in jobs.items():
        t0 = time.perf_counter()
        r = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", "\n".join(spec["lines"])],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=3000,
        )
        print(f"{name}:{job}: exit {r.returncode} after {time.perf_counter() - t0:.0f} s")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        out = next(clone.glob("runs/*/summary.json"))
        assert out.is_file()
        shutil.rmtree(clone / "runs")
