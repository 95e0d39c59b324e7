"""A pipeline's report set (summary.json, report.md, report.html, figures/) appears as a unit.

The set is written into `.report.XXXXXXXX.tmpdir`, which then trades places with `report/` in one
atomic step (renameat2 RENAME_EXCHANGE; two renames where the file system lacks it); the top-level
names are fixed links into `report/`. Fast cases: a reader racing a writer, the on-disk state after
a kill at each step and what the next run does with it, older layouts, `compress check`. The slow
case SIGKILLs a real `compress pipeline` at each step of the publication (the `pipeline.report` test
seam) and checks what a reader sees, what `compress check` says and what `--resume` leaves.
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
from compress.core import runs
from compress.core.runs import clean_stale_temps, is_temp_name, link_aliases, new_temp_dir, sha256_file, swap_dir
from compress.pipeline.check import report_set

pytestmark = pytest.mark.faults
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
FILES = ["summary.json", "report.md", "report.html", "figures"]


def _write_set(d: Path, tag: str) -> None:
    (d / "figures").mkdir()
    (d / "figures" / "pareto.png").write_bytes(b"png " + tag.encode())
    (d / "report.md").write_text(f"# report {tag}\n")
    (d / "report.html").write_text(f"<p>report {tag}</p>\n")
    (d / "summary.json").write_text(json.dumps({"schema": 1, "tag": tag, "accuracy": {"top1": 90.0}}))


def _publish(run: Path, tag: str) -> None:
    tmp = new_temp_dir(run / "report")
    _write_set(tmp, tag)
    swap_dir(tmp, run / "report")
    link_aliases(run / "report", FILES)


def _tags(d: Path) -> set[str]:
    return {
        json.loads((d / "summary.json").read_text())["tag"],
        (d / "report.md").read_text().split()[-1],
        (d / "report.html").read_text().split()[-1].removesuffix("</p>"),
        (d / "figures" / "pareto.png").read_bytes().split()[-1].decode(),
    }


def _view(run: Path) -> set[str]:
    """The tags a reader sees in report/ and through the top-level names."""
    return _tags(report_set(run)) | _tags(run)


def _leftovers(run: Path) -> list[str]:
    return sorted(p.name for p in run.rglob("*") if is_temp_name(p.name))


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_a_new_set_replaces_the_old_one_as_a_unit(tmp_path, monkeypatch, exchange):
    if not exchange:  # a file system without RENAME_EXCHANGE: the fallback
        monkeypatch.setattr(runs, "_exchange", lambda a, b: False)
    run = tmp_path / "run"
    _publish(run, "A")
    assert (run / "report").is_dir() and not (run / "report").is_symlink() and _view(run) == {"A"}
    assert all((run / n).is_symlink() and os.readlink(run / n) == f"report/{n}" for n in FILES)
    _publish(run, "B")
    assert _view(run) == {"B"} and not _leftovers(run)
    assert sorted(p.name for p in run.iterdir()) == sorted(["report", *FILES])


def test_this_kernel_exchanges_directories_in_one_step(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    if not runs._exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here: the two-rename fallback is used")
    assert (tmp_path / "b" / "x").read_text() == "a" and not list((tmp_path / "a").iterdir())


READER = """
import json, os, sys, time
run, stop = sys.argv[1], time.time() + float(sys.argv[2])
seen, replaced, missing = set(), 0, 0
def read(fd, name):
    f = os.open(name, os.O_RDONLY, dir_fd=fd)
    try:
        return os.read(f, 1 << 16)
    finally:
        os.close(f)
while time.time() < stop:
    try:
        fd = os.open(os.path.join(run, "report"), os.O_RDONLY | os.O_DIRECTORY)  # the set, opened once
    except FileNotFoundError:
        missing += 1
        continue
    try:
        tags = {json.loads(read(fd, "summary.json"))["tag"], read(fd, "report.md").split()[-1].decode(),
                read(fd, "report.html").split()[-1].decode().removesuffix("</p>")}
    except FileNotFoundError:  # the set this reader opened was replaced and deleted meanwhile: read again
        replaced += 1
        continue
    finally:
        os.close(fd)
    assert len(tags) == 1, f"a mixture of sets: {tags}"
    seen |= tags
print(json.dumps({"seen": len(seen), "replaced": replaced, "missing": missing}))
"""


def test_a_reader_racing_the_writer_never_sees_a_mixture(tmp_path):
    """Another process reads report/ (opened once, files read relative to it) while this one
    publishes 150 new sets: every set it completes reading is one set; with RENAME_EXCHANGE it never
    finds report/ missing."""
    run = tmp_path / "run"
    _publish(run, "0")
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(run), "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    i = 0
    while reader.poll() is None and i < 150:
        i += 1
        _publish(run, str(i))
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err[-2000:]
    got = json.loads(out)
    assert got["seen"] >= 2, got  # it did read while sets were replaced
    exchange_works = runs._exchange(*[new_temp_dir(tmp_path / n) for n in ("a", "b")])
    if exchange_works:
        assert got["missing"] == 0, got
    assert _view(run) == {str(i)} and not _leftovers(run)


def test_a_kill_at_each_step_leaves_a_whole_set_and_the_next_run_cleans_up(tmp_path):
    """The states a SIGKILL can leave, each followed by what the next writer does when it takes the
    directory's lock (clean_stale_temps)."""
    run = tmp_path / "run"
    _publish(run, "A")
    # 1. killed while writing the new set: its temp directory, half written; readers see A
    half = new_temp_dir(run / "report")
    (half / "summary.json").write_text('{"tag": "B"')
    # 2. killed while making a top-level link: the temp link that was never renamed
    os.symlink("report/summary.json", run / ".summary.json.k3j_x9a0.link.tmp")
    assert _view(run) == {"A"}
    # decoys: names like the toolkit's that are not its temp names stay
    for name in (".report.notes", ".report.abc.tmpdir", "report.tmpdir", ".figures.k3j_x9a0.bak"):
        (run / name).mkdir()
    removed = {p.name for p in clean_stale_temps(run)}
    assert removed == {half.name, ".summary.json.k3j_x9a0.link.tmp"}
    assert _view(run) == {"A"} and not _leftovers(run)
    # 3. killed after the exchange, before the old set was deleted: report/ is B, the old set has a temp name
    tmp = new_temp_dir(run / "report")
    _write_set(tmp, "B")
    assert runs._exchange(tmp, run / "report") or pytest.skip("no RENAME_EXCHANGE here")
    assert _view(run) == {"B"} and _tags(tmp) == {"A"}
    clean_stale_temps(run)
    assert _view(run) == {"B"} and not tmp.exists()
    # 4. (two-rename fallback) killed between the renames: no report/, a whole `.report.X.old`; put back
    os.replace(run / "report", run / ".report.k3j_x9a0.old")
    clean_stale_temps(run)
    assert _view(run) == {"B"} and not _leftovers(run)


def test_a_run_directory_of_the_older_layout_is_converted(tmp_path):
    """Real files and a real figures/ at the top (runs of older versions): replaced by links."""
    run = tmp_path / "run"
    run.mkdir()
    _write_set(run, "old")
    _publish(run, "new")
    assert _view(run) == {"new"} and not _leftovers(run)
    # a copy that resolves every link (an uploaded CI artefact, cp -L) still reads as one set
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, symlinks=False)
    assert not (copy / "summary.json").is_symlink() and _view(copy) == {"new"}


def _done_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    _publish(run, "A")
    rep = run / "report"
    (run / "pipeline.json").write_text(
        json.dumps(
            {
                "status": "done",
                "stages": {},
                "summary_sha256": sha256_file(rep / "summary.json"),
                "report_sha256": {n: sha256_file(rep / n) for n in FILES[:3]},
            }
        )
    )
    return run


def test_check_reads_the_published_set_and_refuses_a_changed_one(tmp_path):
    run = _done_run(tmp_path)
    r = runner.invoke(app, ["check", str(run), "--min-top1", "50"])
    assert r.exit_code == 0, r.stderr
    (run / "report" / "report.html").write_text("<p>report X</p>\n")  # not what the run published
    r = runner.invoke(app, ["check", str(run), "--min-top1", "50"])
    assert r.exit_code == 2 and "report.html is not the one its run published" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_check_accepts_a_copy_that_resolved_the_links(tmp_path):
    run = _done_run(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, symlinks=False)
    r = runner.invoke(app, ["check", str(copy), "--min-top1", "50"])
    assert r.exit_code == 0, r.stderr
    (copy / "report" / "summary.json").write_text(json.dumps({"schema": 1, "tag": "X", "accuracy": {"top1": 99.0}}))
    r = runner.invoke(app, ["check", str(copy), "--min-top1", "50"])
    assert r.exit_code == 2 and "is not the one its run published" in r.stderr, r.stderr


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


def _env(kill_at: str | None = None, *, do: str = "kill") -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "seams"), str(ROOT)]))
    env.pop("COMPRESS_TEST_FAULT", None)
    if kill_at is not None:
        env["COMPRESS_TEST_FAULT"] = json.dumps({"point": "pipeline.report", "when": {"step": kill_at}, "do": do})
    return env


def _cli(args: list[str], *, kill_at: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "from compress.cli.main import main; main()", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(kill_at), timeout=900)


def _gate_threshold(d: Path) -> tuple[float, str]:
    """min_top1 as the summary says and as report.md's gate table shows it, from one resolved set."""
    s = json.loads((d / "summary.json").read_text())["gates"]["min_top1"]
    row = next(ln for ln in (d / "report.md").read_text().splitlines() if ln.startswith("| min-top1 |"))
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
    `step`. A reader sees the old set or the new one, whole and self-consistent; `compress check`
    refuses the run; `--resume` publishes the new set and leaves no temp file."""
    d = finished
    run = tmp_path / "run"
    shutil.copytree(d / "run", run, symlinks=True)  # a copy keeps the relative links
    r = _cli(["pipeline", str(d / "p2.yaml"), "--out", str(run)], kill_at=step)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    thr, row = _gate_threshold(report_set(run))
    assert thr == (1.0 if step == "staged" else 2.0)
    assert re.search(rf"\| {thr:g}(\.0+)? \|", row), row  # the markdown of the same set shows the same gate
    assert json.loads((run / "summary.json").read_text())["gates"]["min_top1"] == thr  # top-level names agree
    assert json.loads((run / "pipeline.json").read_text())["status"] == "running"
    c = _cli(["check", str(run)])
    assert c.returncode == 2 and "is not a finished pipeline run" in c.stderr, c.stderr
    r = _cli(["pipeline", str(d / "p2.yaml"), "--out", str(run), "--resume"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert _gate_threshold(report_set(run))[0] == 2.0
    assert not [p for p in run.rglob("*") if is_temp_name(p.name)]
    c = _cli(["check", str(run)])
    assert c.returncode == 0, c.stderr


GO = """
import sys
from pathlib import Path
from compress.cli.main import main
from compress.pipeline.config import load_pipeline
from compress.pipeline.preflight import preflight
import compress.pipeline.runner, compress.pipeline.check
# what the command does before it locks, imported and warm (on another directory): the clock then
# measures the command itself, not Python's imports on a loaded machine
preflight(load_pipeline(Path(sys.argv[3])), run_dir=Path(sys.argv[1]))
print("imported", flush=True)
sys.stdin.readline()
sys.argv = ["compress", *sys.argv[2:]]
main()
"""


@pytest.mark.slow
def test_a_second_pipeline_and_a_resume_are_refused_while_one_runs(finished, tmp_path):
    """Two real `compress pipeline --out R` and a `--resume` into one directory: while the first holds
    it (paused for 20 s by the seam after staging its report set), the second and the `--resume` are refused
    in under a second with one line naming the first, and change nothing: its pipeline.json stays
    `running`, and the first then finishes `done` with a consistent set that `compress check` passes."""
    import time

    d = finished
    run = tmp_path / "run"
    shutil.copytree(d / "run", run, symlinks=True)
    first = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from compress.cli.main import main; main()",
            "pipeline",
            str(d / "p2.yaml"),
            "--out",
            str(run),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env("staged", do="sleep:20"),
    )
    others = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                GO,
                str(tmp_path / "warm"),
                "pipeline",
                str(d / "p2.yaml"),
                "--out",
                str(run),
                *extra,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for extra in ([], ["--resume"])
    ]
    for p in others:
        assert p.stdout.readline().strip() == "imported"  # type: ignore[union-attr]
    line = first.stderr.readline()  # type: ignore[union-attr]
    while line and not line.startswith("seam: sleeping"):
        line = first.stderr.readline()  # type: ignore[union-attr]
    assert line, "the first pipeline never reached its report step"
    state = (run / "pipeline.json").read_text()
    for p in others:
        t0 = time.perf_counter()
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
        err = p.stderr.readline()  # type: ignore[union-attr]
        took = time.perf_counter() - t0
        err += p.stderr.read()  # type: ignore[union-attr]
        assert p.wait(timeout=60) == 2, err[-2000:]
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and f"is in use by pid {first.pid}" in errors[0], err[-2000:]
        assert "compress pipeline" in errors[0] and "this is a bug" not in err
        assert took < 1.0, f"refused after {took:.2f} s"
    assert (run / "pipeline.json").read_text() == state  # the refused writers changed nothing
    assert first.poll() is None  # still holding the directory
    out, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-2000:]
    assert json.loads((run / "pipeline.json").read_text())["status"] == "done"
    assert _gate_threshold(report_set(run))[0] == 2.0
    c = _cli(["check", str(run)])
    assert c.returncode == 0, c.stderr
