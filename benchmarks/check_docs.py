"""Check every number of docs/benchmarks.md's result tables against the result files.

Each result table in ``docs/benchmarks.md`` is preceded by a comment naming the files it was read
from (paths relative to the repository root; globs allowed) and, optionally, columns that hold
labels rather than results::

    <!-- results: benchmarks/results/ist/ist.json; labels: 0 -->
    | strategy | bytes sent / step / rank | ... |

Every number in every other cell must be found in one of those files: some numeric value ``v``
of the JSON (at any depth), or ``100 * v`` (fractions shown as percentages), equal to the shown
number at the shown precision (``83.19`` matches 83.1949 but not 83.21). Numbers glued to a
letter (``r28``, ``@224``, ``K3``) are labels and skipped. Why a check and not a renderer: the
tables combine several files and runs, as a reader wants to compare them; the check keeps that
freedom while a number that drifts from its file (a re-run, a typo, a copy from the wrong run) fails
the tests. It also reports result files that no table cites.

Annotated tables elsewhere (the README's headline results) are checked the same way, and only those.

Usage: ``python benchmarks/check_docs.py [docs/benchmarks.md]`` (exit 1 with one line per problem).
"""

from __future__ import annotations

import bisect
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
ANNOTATION = re.compile(r"<!--\s*results:\s*(?P<files>[^;>]+?)\s*(?:;\s*labels:\s*(?P<labels>[\d,\s]+))?\s*-->")
NUMBER = re.compile(r"(?<![\w@.])(\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w.]*[A-Za-wyz_])")


@dataclass
class Problem:
    line: int
    text: str

    doc: str = "docs/benchmarks.md"

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def json_numbers(paths: list[Path]) -> list[float]:
    """Every numeric value in the files (and 100x each, for percentages), sorted."""
    out: list[float] = []

    def walk(x: object) -> None:
        if isinstance(x, bool):
            return
        if isinstance(x, (int, float)):
            if math.isfinite(x):
                out.extend((float(x), float(x) * 100.0))
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    for p in paths:
        walk(json.loads(p.read_text()))
    return sorted(out)


def cell_numbers(cell: str) -> list[tuple[str, float, float]]:
    """(shown text, value, tolerance) for each result number in a table cell."""
    cell = re.sub(r"`[^`]*`", " ", cell)  # code spans are names, not results
    found = []
    for m in NUMBER.finditer(cell):
        tok = m.group(1).rstrip(",")
        start = m.start(1)
        neg = start > 0 and cell[start - 1] in "-−" and (start < 2 or not cell[start - 2].isalnum())
        mant, _, exp = tok.lower().partition("e")
        value = float(tok.replace(",", "")) * (-1 if neg else 1)
        if exp:
            tol = abs(value) * 0.05
        else:
            decimals = len(mant.split(".")[1]) if "." in mant else 0
            tol = 0.5 * 10**-decimals
        found.append((("-" if neg else "") + tok, value, tol * (1 + 1e-9) + 1e-12))
    return found


def _present(value: float, tol: float, pool: list[float]) -> bool:
    i = bisect.bisect_left(pool, value - tol)
    return i < len(pool) and pool[i] <= value + tol


def check(doc: Path = DOC, *, every_table: bool = True) -> tuple[list[Problem], set[Path]]:
    """Problems found, and the result files the document cites.

    ``every_table``: a table without a results line is a problem (docs/benchmarks.md); with False
    only annotated tables are checked (the README, whose other tables are not results).
    """
    problems: list[Problem] = []
    cited: set[Path] = set()
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    tables = 0
    while i < len(lines):
        m = ANNOTATION.search(lines[i])
        if not m:
            if (
                every_table
                and lines[i].lstrip().startswith("|")
                and (i == 0 or not lines[i - 1].lstrip().startswith("|"))
            ):
                if i + 1 < len(lines) and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1]):
                    problems.append(Problem(i + 1, "result table without a '<!-- results: FILES -->' line above it"))
            i += 1
            continue
        files: list[Path] = []
        for spec in m.group("files").split(","):
            spec = spec.strip()
            hits = sorted(ROOT.glob(spec))
            if not hits:
                problems.append(Problem(i + 1, f"no result file matches '{spec}'"))
            files.extend(h for h in hits if h.suffix == ".json")
        cited.update(files)
        labels = {int(x) for x in (m.group("labels") or "").replace(",", " ").split()}
        pool = json_numbers(files)
        j = i + 1
        while j < len(lines) and not lines[j].lstrip().startswith("|"):
            if lines[j].strip():
                problems.append(Problem(j + 1, "expected a table right after the results line"))
                break
            j += 1
        row = 0
        while j < len(lines) and lines[j].lstrip().startswith("|"):
            if row >= 2:  # header and separator carry no results
                cells = [c.strip() for c in lines[j].strip().strip("|").split("|")]
                for col, cell in enumerate(cells):
                    if col in labels:
                        continue
                    for shown, value, tol in cell_numbers(cell):
                        if not _present(value, tol, pool):
                            problems.append(
                                Problem(
                                    j + 1,
                                    f"column {col}: {shown} is not in "
                                    f"{', '.join(str(f.relative_to(ROOT)) for f in files)}",
                                )
                            )
            row += 1
            j += 1
        tables += 1
        i = j
    if tables == 0 and every_table:
        problems.append(Problem(1, "no annotated result tables found"))
    name = str(doc.relative_to(ROOT)) if doc.is_relative_to(ROOT) else str(doc)
    for p in problems:
        p.doc = name
    return problems, cited


def main(argv: list[str]) -> int:
    doc = Path(argv[0]) if argv else DOC
    problems, cited = check(doc)
    uncited = sorted(p for p in RESULTS.rglob("*.json") if p not in cited)
    if not argv:  # the README's headline table is checked too
        problems += check(ROOT / "README.md", every_table=False)[0]
    for p in problems:
        print(p)
    for p in uncited:
        print(f"{doc}: no table cites {p.relative_to(ROOT)}")
    return 1 if problems or uncited else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
