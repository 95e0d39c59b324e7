"""The README's and the manual's command examples, executed.

Every ```bash / ```python block in ``README.md`` and ``docs/**/*.md`` carries a second word on
its fence line that says what the tests do with it:

- ``run``: executed here, in the fast suite (must finish in seconds);
- ``slow``: executed only by the slow suite (``make test-all``);
- ``manual``: never executed (needs a device, a board, root or a long time).

Why a harness rather than trust: examples rot silently when options are renamed. The blocks of
one page run in order, in one temporary working directory (so a tutorial's later blocks see what
its earlier blocks wrote), with the repository's top-level entries linked in (paths such as
``examples/demo.yaml`` resolve as from the repository root), the venv's ``compress`` first on
PATH and a private ``XDG_CACHE_HOME`` (no per-user latency tables or caches leak in or out).
Bash blocks run under ``bash -e -o pipefail`` (an expected failure is written so the block still
succeeds: ``! cmd`` or ``cmd || test $? -eq 2``); Python blocks run one by one with ``python -c``.
A failing block is reported by ``file:line``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXEC_LANGS = {"bash", "sh", "shell", "console", "python", "py"}
MARKERS = ("run", "slow", "manual")
# per block: a `run` block must finish in seconds (the limit only catches a hang); a `slow` block may
# train or run the demo pipeline, which takes minutes on a busy 2-core machine
BLOCK_TIMEOUT_S = {"run": 300, "slow": 1800}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)\s*(.*)$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    marker: str | None
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    files = [ROOT / "README.md"] if (ROOT / "README.md").is_file() else []
    return files + sorted((ROOT / "docs").rglob("*.md")) if (ROOT / "docs").is_dir() else files


def extract_blocks(path: Path) -> list[Block]:
    """Fenced blocks of one Markdown file (any language), with the fence's second word."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, rest = m.group(2), m.group(3).lower(), m.group(4).split()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence[0] * len(fence)):
            body.append(lines[i])
            i += 1
        i += 1  # closing fence
        blocks.append(
            Block(path=path, line=start + 1, lang=lang, marker=rest[0] if rest else None, code="\n".join(body) + "\n")
        )
    return blocks


def exec_blocks() -> list[Block]:
    return [b for f in doc_files() for b in extract_blocks(f) if b.lang in EXEC_LANGS]


def _workdir(tmp: Path) -> Path:
    """A temp dir that looks like the repository root (links to its entries) without being it."""
    work = tmp / "work"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in {".git", "runs", ".venv", ".pytest_cache"} or entry.name.startswith(".mypy"):
            continue
        (work / entry.name).symlink_to(entry)
    return work


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env.update(
        {
            "PATH": venv_bin + os.pathsep + env.get("PATH", ""),
            "XDG_CACHE_HOME": str(tmp / "cache"),
            "OMP_NUM_THREADS": "1",
            "COLUMNS": "120",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    env.pop("COMPRESS_TABLES", None)
    env.pop("COMPRESS_PROFILES", None)
    return env


def run_blocks(blocks: list[Block], tmp: Path) -> None:
    """Run ``blocks`` in order in one working directory; fail at the first, naming file:line."""
    work = _workdir(tmp)
    env = _env(tmp)
    for b in blocks:
        if b.lang in {"python", "py"}:
            cmd = [sys.executable, "-c", b.code]
        else:
            cmd = ["bash", "-e", "-o", "pipefail", "-c", b.code]
        limit = BLOCK_TIMEOUT_S.get(b.marker or "run", 300)
        # own session: on a timeout the whole process group goes (bash and what it started)
        proc = subprocess.Popen(
            cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"{b.where}: example did not finish in {limit} s:\n{b.code}")
        p = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
        if p.returncode != 0:
            pytest.fail(
                f"{b.where}: example exited {p.returncode}:\n{b.code}\n--- stdout (tail)\n"
                f"{p.stdout[-2000:]}\n--- stderr (tail)\n{p.stderr[-3000:]}"
            )


def _pages_with(marker: str) -> list[Path]:
    return sorted({b.path for b in exec_blocks() if b.marker == marker})


def test_every_example_is_marked() -> None:
    """A bash/python block without run/slow/manual is an error, so nothing is silently skipped."""
    bad = [
        f"{b.where}: ```{b.lang} needs a second word: run, slow or manual (got {b.marker!r})"
        for b in exec_blocks()
        if b.marker not in MARKERS
    ]
    assert not bad, "\n".join(bad)


def test_extract_blocks_reads_fences(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text("text\n```bash run\necho a\n```\n\n````python manual\nprint(1)\n```\nx\n````\n```\nplain\n```\n")
    blocks = extract_blocks(md)
    assert [(b.line, b.lang, b.marker) for b in blocks] == [(2, "bash", "run"), (6, "python", "manual"), (11, "", None)]
    assert blocks[1].code == "print(1)\n```\nx\n"


def test_failing_block_is_reported_by_file_and_line(tmp_path: Path) -> None:
    md = ROOT / "README.md"
    blk = Block(path=md, line=7, lang="bash", marker="run", code="false\n")
    with pytest.raises(pytest.fail.Exception, match=r"README\.md:7: example exited 1"):
        run_blocks([blk], tmp_path)


@pytest.mark.parametrize("page", _pages_with("run"), ids=lambda p: str(p.relative_to(ROOT)))
def test_run_examples(page: Path, tmp_path: Path) -> None:
    run_blocks([b for b in exec_blocks() if b.path == page and b.marker == "run"], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with("slow"), ids=lambda p: str(p.relative_to(ROOT)))
def test_slow_examples(page: Path, tmp_path: Path) -> None:
    # run blocks of the page first: slow blocks may build on them (a tutorial's set-up).
    blocks = [b for b in exec_blocks() if b.path == page and b.marker in {"run", "slow"}]
    run_blocks(blocks, tmp_path)


SUBCOMMANDS_WITH_CHILDREN = {"latency"}
OPTION = re.compile(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)")


def documented_invocations() -> list[tuple[str, str, list[str]]]:
    """(file:line, command, options) for every `compress CMD --opt ...` in a bash block, any marker."""
    return [inv for b in exec_blocks() if b.lang in {"bash", "sh", "shell", "console"} for inv in invocations(b)]


def invocations(b: Block) -> list[tuple[str, str, list[str]]]:
    """(file:line, command, options) of each `compress CMD ...` in one block; comments ignored."""
    found = []
    text = b.code.replace("\\\n", " ")
    for k, line in enumerate(text.splitlines()):
        line = line.split("#", 1)[0]
        for part in re.split(r"&&|\|\||[|;]|\$\(", line):
            words = part.split()
            if not words or words[0] != "compress" or len(words) < 2 or words[1].startswith("-"):
                continue
            cmd = words[1]
            if cmd in SUBCOMMANDS_WITH_CHILDREN and len(words) > 2 and not words[2].startswith("-"):
                cmd = f"{cmd} {words[2]}"
            opts = [m.group(1) for w in words[2:] if (m := OPTION.match(w.split("=", 1)[0]))]
            found.append((f"{b.where} (+{k})", cmd, opts))
    return found


def test_documented_options_exist() -> None:
    """Every option an example passes to `compress CMD` is one CMD --help lists (manual blocks too)."""
    env = dict(os.environ, COLUMNS="250")
    helps: dict[str, set[str] | None] = {}
    bad = []
    for where, cmd, opts in documented_invocations():
        if cmd not in helps:
            p = subprocess.run(
                [str(Path(sys.executable).parent / "compress"), *cmd.split(), "--help"],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            helps[cmd] = set(OPTION.findall(p.stdout + p.stderr)) if p.returncode == 0 else None
        known = helps[cmd]
        if known is None:
            bad.append(f"{where}: `compress {cmd}` is not a command")
            continue
        bad += [f"{where}: `compress {cmd}` has no option {o}" for o in opts if o not in known]
    assert not bad, "\n".join(bad)


def test_invocations_are_parsed() -> None:
    blk = Block(
        path=ROOT / "README.md",
        line=3,
        lang="bash",
        marker="manual",
        code="compress export m --format onnx \\\n    --out r && compress latency predict x --breakdown | jq .\n"
        "python -m x --y  # compress bench --not-this\ncompress --version\n",
    )
    assert [(c, o) for _, c, o in invocations(blk)] == [
        ("export", ["--format", "--out"]),
        ("latency predict", ["--breakdown"]),
    ]


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    h = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", h).replace(" ", "-")


def test_relative_links_resolve() -> None:
    """Links between the README and the manual point at files (and headings) that exist."""
    bad = []
    for f in doc_files():
        text = f.read_text(encoding="utf-8")
        text = re.sub(r"```.*?```", "", text, flags=re.S)
        for m in LINK.finditer(text):
            target = m.group(1)
            if re.match(r"^[a-z]+:", target) or target.startswith("#") and not target[1:]:
                continue
            path, _, anchor = target.partition("#")
            dest = (f.parent / path).resolve() if path else f
            if not dest.exists():
                bad.append(f"{f.relative_to(ROOT)}: link to missing {target}")
            elif anchor and dest.suffix == ".md":
                heads = {_slug(h) for h in re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), re.M)}
                if anchor not in heads:
                    bad.append(f"{f.relative_to(ROOT)}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not bad, "\n".join(bad)


def test_a_hanging_block_is_stopped_with_its_children(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setitem(BLOCK_TIMEOUT_S, "run", 1)
    blk = Block(
        path=ROOT / "README.md", line=9, lang="bash", marker="run", code="sleep 60 &\necho $! > child.pid\nsleep 60\n"
    )
    t0 = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"README\.md:9: example did not finish in 1 s"):
        run_blocks([blk], tmp_path)
    assert time.monotonic() - t0 < 30
    child = int((tmp_path / "work" / "child.pid").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
