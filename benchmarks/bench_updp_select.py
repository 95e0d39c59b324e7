"""UPDP block selection on the search package's engine vs the selection it replaced (issue #29).

``compress.prune.updp.select`` used to run its own OFA-style evolution (Python ``random``, seed
``seed * 7919 + K``, a mutation loop without a retry cap); it now runs
:func:`compress.search.evolution.evolve` over the block set as a binary ``GeneSpace``. Enumerated
selections (at most 256 masks of one K) are unchanged; evolved ones follow another random stream and
may differ. This benchmark measures whether the switch costs selection quality: on problems the size
of the benchmark rows that evolve (12 eligible blocks, K = 4, 5, 8 and latency budgets whose K + 1 is
evolved; ``benchmarks/results/updp/convnext_atto*``) and larger ones (16 and 20 blocks), each
selector's pick is scored against the exhaustive optimum of the same objective.

Objectives: seeded synthetic scores shaped like the proxy (a per-block damage plus pairwise
interactions, negative) over the *measured* per-block savings of the convnext_atto benchmark rows
(``block_decisions`` in their result files) for the budget cases. The old implementation is loaded
from git (``--old-commit``), not retyped.

    .venv/bin/python benchmarks/bench_updp_select.py     # about 10 minutes (2 shared cores)

Writes ``<out>/bench_updp_select.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.core.runs import atomic_write_json, atomic_write_text  # noqa: E402
from compress.prune.updp import select as new  # noqa: E402

OLD_COMMIT = "c35c1ca"


def load_old(commit: str, tmp: Path) -> types.ModuleType:
    """The selection module as it was at ``commit`` (git show into a temp file, imported from there)."""
    src = subprocess.run(
        ["git", "show", f"{commit}:compress/prune/updp/select.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = tmp / "updp_select_old.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("updp_select_old", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["updp_select_old"] = mod
    spec.loader.exec_module(mod)
    return mod


def objective(names: list[str], seed: int):
    """A proxy-shaped score: -(sum of per-block damage + pairwise interaction), seeded."""
    rng = np.random.default_rng(seed)
    damage = dict(zip(names, rng.gamma(2.0, 1.0, len(names))))
    inter = rng.normal(0.0, 0.3, (len(names), len(names)))
    idx = {n: i for i, n in enumerate(names)}

    def score(mask) -> float:
        s = sum(damage[n] for n in mask)
        s += sum(inter[idx[a], idx[b]] for a, b in itertools.combinations(mask, 2))
        return -float(s)

    return score


def exhaustive(decisions, base_ms, score, k_set, latency_ms):
    best = None
    pool = [d.name for d in decisions if d.eligible]
    by = {d.name: d for d in decisions}
    for k in k_set:
        for m in itertools.combinations(pool, k):
            if latency_ms is not None and base_ms - sum(by[n].saving_ms for n in m) > latency_ms:
                continue
            v = score(m)
            best = v if best is None else max(best, v)
    return best


def settings() -> list[dict]:
    out = []
    for f in (
        "convnext_atto/bench_updp.json",
        "convnext_atto_budget/bench_updp.json",
        "convnext_atto_2x/bench_updp.json",
    ):
        data = json.loads((ROOT / "benchmarks/results/updp" / f).read_text())
        for m in data["models"]:
            decs = [new.decide(d["name"], "convnext", d["original_ms"], d["forms_ms"]) for d in m["block_decisions"]]
            for r in m["rows"]:
                case = {"source": f, "k": r["k"], "decisions": decs, "base_ms": r["predicted_base_ms"]}
                if "target_speedup" in r:
                    case["latency_ms"] = r["predicted_base_ms"] / r["target_speedup"]
                out.append(case)
    for n, k in ((16, 6), (20, 6), (20, 10)):  # larger pools than the benchmark rows
        names = [f"b{i:02d}" for i in range(n)]
        decs = [new.decide(x, "mbconv", 1.0, {"dense": 0.9 - 0.01 * i}) for i, x in enumerate(names)]
        out.append({"source": f"synthetic n={n}", "k": k, "decisions": decs, "base_ms": float(n)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objectives", type=int, default=20, help="seeded objectives per setting")
    ap.add_argument("--old-commit", default=OLD_COMMIT)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/updp/select")
    a = ap.parse_args()
    old = load_old(a.old_commit, Path(tempfile.mkdtemp()))
    rows = []
    t0 = time.time()
    for case in settings():
        decs, base_ms, lat = case["decisions"], case["base_ms"], case.get("latency_ms")
        names = [d.name for d in decs if d.eligible]
        agg = {"old": [], "new": []}
        evals = {"old": [], "new": []}
        same = 0
        for j in range(a.objectives):
            score = objective(names, 1000 + j)
            kw = {"blocks": case["k"]} if lat is None else {"latency_ms": lat}
            so = old.select_blocks(decs, base_ms=base_ms, score=score, config=old.SearchConfig(seed=j), **kw)
            sn = new.select_blocks(decs, base_ms=base_ms, score=score, seed=j, **kw)
            k_set = [case["k"]] if lat is None else sorted({len(so.mask), len(sn.mask), len(so.mask) - 1})
            opt = exhaustive(decs, base_ms, score, k_set, lat)
            for tag, s in (("old", so), ("new", sn)):
                agg[tag].append(opt - s.score)
                evals[tag].append(s.evaluated)
            same += so.mask == sn.mask
        row = {
            "setting": case["source"] + (f" budget {lat:.4f} ms" if lat is not None else f" K={case['k']}"),
            "eligible": len(names),
            "objectives": a.objectives,
            "same_mask": same,
        }
        for tag in ("old", "new"):
            reg = np.array(agg[tag])
            row[tag] = {
                "optimal": int((reg <= 1e-12).sum()),
                "mean_regret": float(reg.mean()),
                "max_regret": float(reg.max()),
                "masks_evaluated_mean": float(np.mean(evals[tag])),
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "benchmark": "updp_select",
        "old_commit": a.old_commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(time.time() - t0, 1),
        "rows": rows,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(a.out / "bench_updp_select.json", result)
    md = [
        "| setting | eligible | optimal old / new | mean regret old / new | masks evaluated old / new | same mask |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, n = r["old"], r["new"]
        md.append(
            f"| {r['setting']} | {r['eligible']} | {o['optimal']}/{r['objectives']} / {n['optimal']}/{r['objectives']} | "
            f"{o['mean_regret']:.4f} / {n['mean_regret']:.4f} | {o['masks_evaluated_mean']:.0f} / {n['masks_evaluated_mean']:.0f} | "
            f"{r['same_mask']}/{r['objectives']} |"
        )
    atomic_write_text(a.out / "bench_updp_select.md", "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
