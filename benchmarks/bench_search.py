"""Search benchmark: speed against the ``ofa`` package's EvolutionFinder, and search quality.

Run:  .venv/bin/python benchmarks/bench_search.py [--quick] [--out benchmarks/results/search]

1. **Speed** (side by side, one process, interleaved repeats, medians): the ``ofa`` tutorial's
   ``EvolutionFinder`` (``ofa/tutorial/evolution_finder.py``: population 100, 500 generations, parent
   ratio 0.25, mutation ratio 0.5, mutate prob 0.1) with its 3x400 ``AccuracyPredictor`` and its
   per-block ``LatencyEstimator`` lookup table on the OFA-MBv3 w1.2 space, against
   :func:`compress.search.evolution.evolve` with the *same* MLP weights and the same table
   (vectorised). Both predictors are checked to agree on random rows before timing.
2. **Quality**: our selected subnet's predicted top-1 against the best of 10,000 random feasible
   samples under the same budget and predictors (several seeds).
3. **Real supernet** (when ``--supernet CKPT`` is given): runs ``compress.search`` with
   ``--rerank``, then measures the selected subnet's top-1 after BN recalibration and its
   latency on the local CPU, against the predictions.

Timings are noisy on shared machines: the script re-times a fixed reference workload (the
canary: a fixed numpy matmul loop) before every repeat and reports the drift it saw.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _ofa_space as S  # noqa: E402

from compress.search.constraints import ConstraintSet  # noqa: E402
from compress.search.evolution import evolve  # noqa: E402
from compress.search.predictor import LayeredPredictor  # noqa: E402
from compress.search.protocols import GeneSpace  # noqa: E402
from compress.search.random import random_search  # noqa: E402


def _canary() -> float:
    """A fixed single-threaded workload (min of 3): its drift shows how busy the machine was."""
    from compress.search.evolution import single_thread_blas

    best = float("inf")
    with single_thread_blas():
        for _ in range(3):
            a = np.random.default_rng(0).random((256, 256)).astype(np.float32)
            t = time.perf_counter()
            for _ in range(20):
                a = np.tanh(a @ a * 1e-3)
            best = min(best, time.perf_counter() - t)
    return best


def build(seed: int = 0):
    import torch

    AccuracyPredictor = S.tutorial_module("accuracy_predictor").AccuracyPredictor
    LatencyEstimator = S.tutorial_module("latency_table").LatencyEstimator

    luts, base, table = S.build_tables()

    class RefTable:  # the tutorial's LatencyTable, with the lookup tables given instead of downloaded
        def __init__(self) -> None:
            self.latency_tables = {}
            for r, lut in luts.items():
                est = LatencyEstimator.__new__(LatencyEstimator)
                est.lut = lut
                self.latency_tables[r] = est

        def predict_efficiency(self, spec):
            return self.latency_tables[spec["r"][0]].predict_network_latency_given_spec(spec)

    torch.manual_seed(seed)
    ref_acc = AccuracyPredictor(pretrained=False, device="cpu")
    with torch.no_grad():  # give the random MLP a plausible output scale (top-1 around 0.75)
        ref_acc.model[-1].weight.mul_(0.05)
        ref_acc.model[-1].bias.fill_(0.75)
    lin = [m for m in ref_acc.model if isinstance(m, torch.nn.Linear)]
    ours_acc = LayeredPredictor(
        weights=[m.weight.detach().numpy().T.copy() for m in lin],
        biases=[m.bias.detach().numpy().copy() for m in lin],
        base=0.0,
        encode=S.encode,
    )
    ours_lat = S.GeneLatency(base, table)
    # agreement check on random rows
    rng = np.random.default_rng(seed)
    g = np.minimum((rng.random((500, S.SIZES.size)) * S.SIZES).astype(np.int64), S.SIZES - 1)
    samples = [S.to_sample(row) for row in g]
    ref_lat = np.array([RefTable().predict_efficiency(s) for s in samples[:200]])
    np.testing.assert_allclose(ours_lat.predict_genes(g[:200]), ref_lat, rtol=1e-9)
    with torch.no_grad():
        ref_pred = ref_acc.predict_accuracy(samples).numpy().reshape(-1)
    np.testing.assert_allclose(ours_acc.predict_genes(g), ref_pred, atol=1e-5)
    lat_all = ours_lat.predict_genes(g)
    return (
        RefTable(),
        ref_acc,
        ours_acc,
        ours_lat,
        (float(lat_all.min()), float(np.median(lat_all)), float(lat_all.max())),
    )


def run_ref(ref_table, ref_acc, budget: float, generations: int, seed: int):
    import torch

    EvolutionFinder = S.tutorial_module("evolution_finder").EvolutionFinder

    random.seed(seed)
    np.random.seed(seed)
    finder = EvolutionFinder("note10", budget, ref_table, ref_acc, max_time_budget=generations)
    import contextlib
    import io

    with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
        t = time.perf_counter()
        best_valids, best_info = finder.run_evolution_search()
        dt = time.perf_counter() - t
    return dt, float(best_info[0]), float(best_info[2])


def run_ours(acc, lat, budget: float, generations: int, seed: int, *, memo: bool = True):
    acc._memo.clear()
    acc.memo_size = (1 << 20) if memo else 0
    gs = GeneSpace(sizes=S.SIZES, groups=S.GROUPS, mutate_prob=0.1)
    cs = ConstraintSet({"latency_ms": lat.predict_genes}, {"latency_ms": budget})
    t = time.perf_counter()
    r = evolve(gs, acc, cs, rng=np.random.default_rng(seed), generations=generations, keep_archive=False)
    dt = time.perf_counter() - t
    return dt, float(r.scores[0]), float(r.values["latency_ms"][0]), r


def speed(args, out: dict) -> None:
    import torch

    torch.set_num_threads(1)
    ref_table, ref_acc, acc, lat, (lo, med, hi) = build()
    budget = float(np.clip(round((lo + med) / 2, 1), 15, 60))
    gens = 100 if args.quick else 500
    reps = 1 if args.quick else 3
    rows = []
    for rep in range(reps):
        c0 = _canary()
        tr, acc_r, lat_r = run_ref(ref_table, ref_acc, budget, gens, seed=rep)
        c1 = _canary()
        to, acc_o, lat_o, _ = run_ours(acc, lat, budget, gens, seed=rep)
        tn, _, _, _ = run_ours(acc, lat, budget, gens, seed=rep, memo=False)
        c2 = _canary()
        rows.append(
            {
                "rep": rep,
                "ref_s": tr,
                "ours_s": to,
                "ours_no_memo_s": tn,
                "ratio": tr / to,
                "ratio_no_memo": tr / tn,
                "ref_best_top1": acc_r,
                "ours_best_top1": acc_o,
                "ref_latency_ms": lat_r,
                "ours_latency_ms": lat_o,
                "canary_s": [c0, c1, c2],
            }
        )
        print(
            f"[speed] rep {rep}: ofa EvolutionFinder {tr:.3f} s, ours {to:.3f} s -> {tr / to:.1f}x "
            f"(without the prediction memo {tn:.3f} s -> {tr / tn:.1f}x); "
            f"best predicted top-1 ofa {acc_r:.4f} vs ours {acc_o:.4f}; canary {c0 * 1e3:.0f}/{c1 * 1e3:.0f}/{c2 * 1e3:.0f} ms",
            file=sys.stderr,
        )
    canaries = np.array([r["canary_s"] for r in rows]).ravel()
    out["speed"] = {
        "space": "ofa-mbv3 w1.2 (tutorial), r in 160..224/16",
        "population": 100,
        "generations": gens,
        "budget_ms": budget,
        "table_latency_range_ms": [lo, med, hi],
        "ref_s_median": float(np.median([r["ref_s"] for r in rows])),
        "ours_s_median": float(np.median([r["ours_s"] for r in rows])),
        "ratio_median": float(np.median([r["ratio"] for r in rows])),
        "ours_no_memo_s_median": float(np.median([r["ours_no_memo_s"] for r in rows])),
        "ratio_no_memo_median": float(np.median([r["ratio_no_memo"] for r in rows])),
        "canary_drift_max_over_min": float(canaries.max() / canaries.min()),
        "reps": rows,
    }


def quality(args, out: dict) -> None:
    _, _, acc, lat, (lo, med, hi) = build()
    gs = GeneSpace(sizes=S.SIZES, groups=S.GROUPS, mutate_prob=0.1)
    rows = []
    for budget in (round(lo + 0.25 * (med - lo), 1), round(med, 1)):
        cs = ConstraintSet({"latency_ms": lat.predict_genes}, {"latency_ms": budget})
        for seed in range(2 if args.quick else 5):
            r = evolve(
                gs, acc, cs, rng=np.random.default_rng(seed), generations=100 if args.quick else 500, keep_archive=False
            )
            rnd = random_search(gs, acc, cs, rng=np.random.default_rng(1000 + seed), samples=10_000)
            rows.append(
                {
                    "budget_ms": budget,
                    "seed": seed,
                    "evolution_top1": float(r.scores[0]),
                    "random10k_top1": float(rnd.scores[0]),
                    "ok": bool(r.scores[0] >= rnd.scores[0]),
                }
            )
            print(
                f"[quality] budget {budget} ms seed {seed}: evolution {r.scores[0]:.4f} vs best of "
                f"{rnd.genes.shape[0]} random feasible {rnd.scores[0]:.4f}",
                file=sys.stderr,
            )
    out["quality"] = {"rows": rows, "all_ok": all(r["ok"] for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 generations, 1 repeat, 2 seeds")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/search"))
    ap.add_argument("--supernet", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1, help="runtime threads for the --supernet latency part")
    ap.add_argument("--skip", nargs="*", default=[], choices=["speed", "quality", "supernet"])
    args = ap.parse_args()
    out: dict = {"quick": args.quick}
    if "speed" not in args.skip:
        speed(args, out)
    if "quality" not in args.skip:
        quality(args, out)
    if args.supernet is not None and "supernet" not in args.skip:
        from _bench_search_supernet import supernet_section  # noqa: PLC0415

        supernet_section(args, out)
    from compress.core.runs import atomic_write_json

    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / ("search_quick.json" if args.quick else "search.json"), out)
    print(
        json.dumps(
            {
                k: {kk: vv for kk, vv in v.items() if kk not in ("reps", "rows")} if isinstance(v, dict) else v
                for k, v in out.items()
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
