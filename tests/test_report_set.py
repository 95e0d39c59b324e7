"""A pipeline's report set (summary.json, report.md, report.html, figures/) appears as a unit.

The set is written into `.report.XXXXXXXX.gen`, then the link `report` is re-pointed at it with one
rename; the top-level names are fixed links into `report/`. Fast cases build the on-disk states
directly; the slow case SIGKILLs a real `compress pipeline` at each step of the publication (the
`pipeline.report` test seam) and checks what a reader sees, what `compress check` says and what the
next run (`--resume`) leaves behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compress.cli.main import app
from compress.core.runs import (
    clean_stale_temps,
    generation_of,
    is_temp_name,
    link_aliases,
    new_generation,
    publish_generation,
    sha256_file,
)
from compress.pipeline.check import report_set

pytestmark = pytest.mark.faults
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
FILES = ["summary.json", "report.md", "report.html", "figures"]


def _write_set(gen: Path, tag: str) -> None:
    (gen / "figures").mkdir()
    (gen / "figures" / "pareto.png").write_bytes(b"png " + tag.encode())
    (gen / "report.md").write_text(f"# report {tag}\n")
    (gen / "report.html").write_text(f"<p>report {tag}</p>\n")
    (gen / "summary.json").write_text(json.dumps({"schema": 1, "tag": tag, "accuracy": {"top1": 90.0}}))


def _publish(run: Path, tag: str) -> Path:
    gen = new_generation(run / "report")
    _write_set(gen, tag)
    publish_generation(run / "report", gen)
    link_aliases(run / "report", FILES)
    return gen


def _view(run: Path) -> set[str]:
    """The tags a reader sees through the top-level names and through `report/` resolved once."""
    d = report_set(run)
    tags = {
        json.loads((d / "summary.json").read_text())["tag"],
        (d / "report.md").read_text().split()[-1],
        (d / "report.html").read_text().split()[-1].removesuffix("</p>"),
        (d / "figures" / "pareto.png").read_bytes().split()[-1].decode(),
    }
    tags |= {json.loads((run / "summary.json").read_text())["tag"], (run / "report.md").read_text().split()[-1]}
    return tags


def test_a_new_set_replaces_the_old_one_with_one_rename_and_the_next_writer_removes_the_old(tmp_path):
    run = tmp_path / "run"
    a = _publish(run, "A")
    assert generation_of(run / "report") == a.name and _view(run) == {"A"}
    assert all((run / n).is_symlink() and os.readlink(run / n) == f"report/{n}" for n in FILES)
    b = _publish(run, "B")
    assert generation_of(run / "report") == b.name and _view(run) == {"B"}
    assert a.is_dir()  # the replaced set stays for readers still inside it, until the next writer
    removed = clean_stale_temps(run)  # what the next writer does when it takes the lock
    assert removed == [a] and b.is_dir() and _view(run) == {"B"}
    assert not [p for p in run.rglob("*") if is_temp_name(p.name)]


def test_a_killed_publication_leaves_the_old_set_whole_and_its_leftovers_go_with_the_next_run(tmp_path):
    run = tmp_path / "run"
    a = _publish(run, "A")
    # killed while writing the new set: an unpublished generation, readers still see A
    half = new_generation(run / "report")
    (half / "summary.json").write_text('{"tag": "B"')  # half written
    # killed while re-pointing: the temp link that was never renamed over `report`
    os.symlink(half.name, run / ".report.k3j_x9a0.link.tmp")
    assert _view(run) == {"A"}
    # decoys: names like the toolkit's that are not its temp names stay
    (run / ".report.notes").mkdir()
    (run / ".report.abc.gen").mkdir()  # not 8 random characters
    (run / "report.gen").mkdir()
    (run / ".figures.k3j_x9a0.bak").write_text("mine")
    removed = {p.name for p in clean_stale_temps(run)}
    assert removed == {half.name, ".report.k3j_x9a0.link.tmp"}
    assert {p.name for p in run.iterdir()} >= {
        ".report.notes",
        ".report.abc.gen",
        "report.gen",
        ".figures.k3j_x9a0.bak",
    }
    assert a.is_dir() and _view(run) == {"A"}


def test_a_run_directory_of_the_older_layout_is_converted(tmp_path):
    """Real files and a real figures/ at the top (older versions, or a copy that resolved the links)."""
    run = tmp_path / "run"
    run.mkdir()
    _write_set(run, "old")
    (run / "report").mkdir()  # a real directory named like the link: moved aside, then replaced
    _publish(run, "new")
    assert _view(run) == {"new"}
    assert not [p for p in run.iterdir() if p.name.endswith(".old")]
    # a copy that resolves every link (an uploaded CI artefact) still reads as one set
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, symlinks=False)
    assert not (copy / "report").is_symlink() and _view(copy) == {"new"}


def test_a_crash_while_moving_an_older_layout_aside_is_undone(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".figures.k3j_x9a0.old").mkdir()  # killed between moving figures/ aside and linking
    (run / ".figures.k3j_x9a0.old" / "pareto.png").write_bytes(b"png old")
    clean_stale_temps(run)
    assert (run / "figures" / "pareto.png").read_bytes() == b"png old"


def _done_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    gen = _publish(run, "A")
    (run / "pipeline.json").write_text(
        json.dumps(
            {"status": "done", "stages": {}, "report": gen.name, "summary_sha256": sha256_file(gen / "summary.json")}
        )
    )
    return run


def test_check_reads_the_published_set_and_refuses_another_one(tmp_path):
    run = _done_run(tmp_path)
    r = runner.invoke(app, ["check", str(run), "--min-top1", "50"])
    assert r.exit_code == 0, r.stderr
    # a set published after the run recorded `done` (not by that run): refused, one line
    _publish(run, "B")
    r = runner.invoke(app, ["check", str(run), "--min-top1", "50"])
    assert r.exit_code == 2 and "is not the report set its run published" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_check_accepts_a_copy_that_resolved_the_links(tmp_path):
    run = _done_run(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, symlinks=False)
    r = runner.invoke(app, ["check", str(copy), "--min-top1", "50"])
    assert r.exit_code == 0, r.stderr
    (copy / "summary.json").write_text(json.dumps({"schema": 1, "tag": "X", "accuracy": {"top1": 99.0}}))
    r = runner.invoke(app, ["check", str(copy), "--min-top1", "50"])
    assert r.exit_code == 2 and "is not the summary its run wrote" in r.stderr


# ---- a real pipeline, SIGKILLed at each step of the publication (slow) ----------------------------

PIPE = """
name: reportset
seed: 0
supernet: {ckpt}
data: {{name: digits}}
devices:
  - {{name: local-cpu, profile: true, budget_ms: 5}}
profiling: {{iterations: 2, warmup: 1, calibrate: 0, threads: 1, resolutions: [12]}}
search: {{population: 8, generations: 2, predictor_samples: 10, calib_images: 32, val_images: 60}}
prune: {{method: updp, blocks: 1, epochs: 1, max_steps: 2, train_limit: 256, latency: macs-estimate}}
export: {{formats: [onnx], samples: 8}}
bench: {{runtimes: [onnxruntime], iterations: 3, warmup: 1, rounds: 1, threads: 1}}
gates: {{min_top1: {min_top1}, max_parity_err: 1.0e-3}}
"""


def _cli(args: list[str], *, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "seams"), str(ROOT)]))
    env.pop("COMPRESS_TEST_FAULT", None)
    if kill_at is not None:
        env["COMPRESS_TEST_FAULT"] = json.dumps({"point": "pipeline.report", "when": {"step": kill_at}, "do": "kill"})
    cmd = [sys.executable, "-c", "from compress.cli.main import main; main()", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def _gate_threshold(d: Path) -> tuple[float, str]:
    """min_top1 as the summary says and as report.md's gate table shows it, from one resolved set."""
    s = json.loads((d / "summary.json").read_text())["gates"]["min_top1"]
    row = next(ln for ln in (d / "report.md").read_text().splitlines() if ln.startswith("| min_top1"))
    return float(s), row


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "tests"))
    from _search_fixtures import make_checkpoint

    d = tmp_path_factory.mktemp("reportset")
    ckpt = make_checkpoint(d / "tiny.safetensors", train_steps=10)
    for thr in (1, 2):
        (d / f"p{thr}.yaml").write_text(PIPE.format(ckpt=ckpt, min_top1=thr))
    r = _cli(["pipeline", str(d / "p1.yaml"), "--out", str(d / "run")])
    assert r.returncode == 0, r.stderr[-3000:]
    return d


@pytest.mark.slow
@pytest.mark.parametrize("step", ["staged", "swapped", "linked"])
def test_pipeline_killed_between_the_publication_steps(finished, tmp_path, step):
    """A new gate threshold (1 -> 2) redoes only the check stage and a new report set; SIGKILL after
    `step`. A reader sees the old set or the new one, each whole and self-consistent; `compress check`
    refuses the run; `--resume` publishes the new set, removes the killed run's generation and
    leaves no temp file."""
    d = finished
    run = tmp_path / "run"
    shutil.copytree(d / "run", run, symlinks=True)  # a copy keeps the relative links
    old_gen = generation_of(run / "report")
    r = _cli(["pipeline", str(d / "p2.yaml"), "--out", str(run)], kill_at=step)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    thr, row = _gate_threshold(report_set(run))
    assert thr == (1.0 if step == "staged" else 2.0)
    assert re.search(rf"\| {thr:g}(\.0+)? \|", row), row  # the markdown of the same set shows the same gate
    assert json.loads((run / "summary.json").read_text())["gates"]["min_top1"] == thr  # top-level names agree
    assert json.loads((run / "pipeline.json").read_text())["status"] == "running"
    c = _cli(["check", str(run)])
    assert c.returncode == 2 and "is not a finished pipeline run" in c.stderr, c.stderr
    gens = {p.name for p in run.glob(".report.*.gen")}
    assert len(gens) == 2  # the old set and the killed run's new one
    r = _cli(["pipeline", str(d / "p2.yaml"), "--out", str(run), "--resume"])
    assert r.returncode == 0, r.stderr[-2000:]
    live = generation_of(run / "report")
    assert live not in gens  # a fresh set; the killed run's unpublished one is gone
    left = {p.name for p in run.glob(".report.*.gen")}
    if step == "staged":
        assert left == {old_gen, live}  # the killed one removed, the replaced one kept for readers
    else:  # the killed run had published its set: that one is now the replaced one, the first is gone
        assert left == {live} | (gens - {old_gen})
    assert _gate_threshold(report_set(run))[0] == 2.0
    assert not [p for p in run.rglob("*") if is_temp_name(p.name)]
    c = _cli(["check", str(run)])
    assert c.returncode == 0, c.stderr
