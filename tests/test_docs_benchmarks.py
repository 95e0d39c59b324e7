"""docs/benchmarks.md cannot drift from benchmarks/results: every table number is checked."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _checker():
    spec = importlib.util.spec_from_file_location("check_docs", ROOT / "benchmarks" / "check_docs.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_docs"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_every_table_number_is_in_its_result_file() -> None:
    mod = _checker()
    problems, cited = mod.check(ROOT / "docs" / "benchmarks.md")
    assert not problems, "\n".join(map(str, problems))
    uncited = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "benchmarks" / "results").rglob("*.json") if p not in cited
    )
    assert not uncited, (
        f"result files no table in docs/benchmarks.md cites: {uncited}; add each result's table there, "
        "with the command and date, under a '<!-- results: PATH -->' line (python benchmarks/check_docs.py checks it)"
    )


def test_a_drifted_number_is_caught(tmp_path: Path) -> None:
    mod = _checker()
    doc = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert "| DDP | 1,405,040 |" in doc
    bad = tmp_path / "benchmarks.md"
    bad.write_text(doc.replace("| DDP | 1,405,040 |", "| DDP | 1,405,041 |"), encoding="utf-8")
    problems, _ = mod.check(bad)
    assert [p.text for p in problems] == ["column 1: 1,405,041 is not in benchmarks/results/ist/ist.json"]


def test_numbers_are_read_at_their_precision() -> None:
    mod = _checker()
    nums = {
        shown: (value, tol)
        for shown, value, tol in mod.cell_numbers("**1.70x** / 82.57 (r28, `blocks.4`) −0.40 12.3% (12.3-12.4) 1e-4")
    }
    assert set(nums) == {"1.70", "82.57", "-0.40", "12.3", "12.4", "1e-4"}
    assert nums["-0.40"][0] == -0.40 and abs(nums["82.57"][1] - 0.005) < 1e-9
    assert mod._present(82.57, 0.005 + 1e-12, sorted([82.574])) and not mod._present(82.57, 0.005, [82.58])


def test_readme_headline_numbers_are_in_their_result_files() -> None:
    mod = _checker()
    problems, cited = mod.check(ROOT / "README.md", every_table=False)
    assert not problems, "\n".join(map(str, problems))
    assert cited, "the README's headline results table lost its '<!-- results: ... -->' line"
