"""How much faster can UPDP make a model on this CPU at all? Speed only, no training.

For each timm model and input size: find the merge candidates with an identity shortcut, time every
block's original and merged forms on the runtime (the block decisions ``compress prune`` makes), take
the K eligible blocks with the largest measured saving, merge them at λ = 1 and time the whole model
against the original side by side (the same drift-controlled check ``compress prune`` runs before
training). Weights are random: latency does not depend on them, so this gives the ceiling a trained
model can reach, not its accuracy.

    .venv/bin/python benchmarks/bench_updp_ceiling.py [--models mobilenetv2_100,convnext_atto] [--sizes 32,64]

Writes ``<out>/bench_updp_ceiling.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.core.runs import atomic_write_json, atomic_write_text  # noqa: E402
from compress.prune.updp.api import block_decisions, verify_speedup  # noqa: E402
from compress.prune.updp.candidates import chain_of, find_candidates  # noqa: E402
from compress.prune.updp.latency import MeasuredBlockLatency  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_updp import _pruned  # noqa: E402  (the same identity-shortcut filter as the trained benchmark)


def ceiling(name: str, size: int, ks: list[int], *, runtime: str, iterations: int, threads: int) -> dict:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, in_chans=1).eval()
    shape = (1, size, size)
    cands, skipped = find_candidates(model)
    cands = [c for c in cands if chain_of(_pruned(c)).residual]
    lat = MeasuredBlockLatency(runtime=runtime, iterations=iterations, threads=threads)
    base_ms, decisions = block_decisions(model, cands, shape, lat)
    eligible = sorted(
        (d for d in decisions if d.eligible), key=lambda d: d.original_ms - d.forms_ms[d.form], reverse=True
    )
    rows = []
    for k in [k for k in ks if k <= len(eligible)] + ([len(eligible)] if len(eligible) not in ks else []):
        sel = eligible[:k]
        chk = verify_speedup(model, [d.name for d in sel], {d.name: d.form for d in sel}, shape, lat)
        rows.append(
            {
                "k": k,
                "blocks": [d.name for d in sel],
                "forms": {d.name: d.form for d in sel},
                "speedup": chk["speedup"],
                "original_ms": chk["original_ms"],
                "merged_ms": chk["merged_ms"],
                "controlled": chk["controlled"],
            }
        )
        print(
            f"[{name} {size}px] K={k}: {chk['speedup']:.3f}x ({'controlled' if chk['controlled'] else 'uncontrolled'})",
            file=sys.stderr,
            flush=True,
        )
    return {
        "model": name,
        "input_shape": list(shape),
        "model_ms": base_ms,
        "candidates": len(cands),
        "eligible": len(eligible),
        "skipped": [s.name for s in skipped],
        "rows": rows,
        "decisions": [d.to_json() for d in decisions],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenetv2_100,convnext_atto")
    ap.add_argument("--sizes", default="32,64")
    ap.add_argument("--ks", default="2,4,6,8")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "updp")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    ks = [int(k) for k in a.ks.split(",")]
    res = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runtime": a.runtime,
        "threads": a.threads,
        "iterations": a.iterations,
        "results": [],
    }
    for name in a.models.split(","):
        for size in (int(s) for s in a.sizes.split(",")):
            res["results"].append(
                ceiling(name, size, ks, runtime=a.runtime, iterations=a.iterations, threads=a.threads)
            )
    a.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(a.out / "bench_updp_ceiling.json", res)
    md = [
        f"# UPDP speed-up ceiling, {res['date']}",
        "",
        f"Random weights (speed only), {a.runtime}, {a.threads} thread(s), batch 1; the K eligible blocks with the "
        "largest measured saving merged at λ = 1; whole model timed against the original side by side.",
        "",
        "| model | input | eligible blocks | K | speed-up | drift |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["results"]:
        for row in r["rows"]:
            md.append(
                f"| {r['model']} | {r['input_shape'][1]} px | {r['eligible']} | {row['k']} | {row['speedup']:.2f}x | "
                f"{'controlled' if row['controlled'] else 'uncontrolled'} |"
            )
    atomic_write_text(a.out / "bench_updp_ceiling.md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
