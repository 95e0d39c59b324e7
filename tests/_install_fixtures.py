"""Fast stand-ins for "a fresh venv with only these packages", for the install tests.

A real ``pip install`` of the core stack copies torch's 5 GB (CUDA build) and takes minutes on
these machines, so the fast tests build a *real* venv (``python -m venv``) whose site-packages holds
symlinks to exactly the distributions a requirement set needs — the requirement closure read from
the installed metadata of the running environment (markers evaluated, extras followed) — and
nothing else. Optional packages are then genuinely absent: ``import openvino`` fails and
``importlib.metadata`` does not list them, as in a core-only install. The slow tests
(``test_install.py -m slow``) do the real ``pip install`` instead.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("compress_ci_lock", REPO / ".ci" / "lock.py")
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)  # type: ignore[union-attr]
canon = lock.canon
project_requirements = lock.project_requirements


def closure(reqs) -> set[str]:
    """Canonical names of the installed distributions ``reqs`` need (transitively)."""
    return set(lock.closure(list(reqs)))


def _top_level_entries(dist: md.Distribution) -> set[str]:
    site = Path(dist.locate_file(""))
    names = set()
    for f in dist.files or []:
        parts = Path(f).parts
        if parts and parts[0] != ".." and not parts[0].startswith("__pycache__"):
            names.add(parts[0])
    # the dist-info directory itself (so importlib.metadata sees it)
    names.add(Path(str(dist._path)).name)  # type: ignore[attr-defined]
    return {n for n in names if (site / n).exists()}


def make_view_venv(dest: Path, dists: set[str], *, with_project: bool = True) -> Path:
    """A venv at ``dest`` whose site-packages links exactly ``dists`` from this environment.

    ``with_project`` adds the checkout to ``sys.path`` (a ``.pth``), as an editable install would,
    and a ``compress`` launcher script. Returns the venv's python.
    """
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(dest)], check=True)
    py = dest / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    ours = Path(sysconfig.get_paths()["purelib"])
    by_name = {canon(d.metadata["Name"]): d for d in md.distributions() if d.metadata["Name"]}
    for name in sorted(dists):
        d = by_name[name]
        if Path(d.locate_file("")).resolve() != ours.resolve():
            continue  # the project's own editable install or a system package: not linked
        for entry in _top_level_entries(d):
            link = site / entry
            if not link.exists():
                os.symlink(ours / entry, link)
    if with_project:
        # the project's editable install in this environment (its finder maps compress.export and
        # compress.hardware_profiles to their folders), else the checkout on sys.path
        editable = [*ours.glob("__editable__*compress*"), *ours.glob("compress-*.dist-info")]
        for entry in editable:
            os.symlink(entry, site / entry.name)
        if not editable:
            (site / "compress_checkout.pth").write_text(str(REPO) + "\n")
        launcher = dest / "bin" / "compress"
        launcher.write_text(f"#!{py}\nimport sys\nfrom compress.cli.main import main\nsys.exit(main())\n")
        launcher.chmod(0o755)
    return py
