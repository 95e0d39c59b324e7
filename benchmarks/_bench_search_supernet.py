"""Search on a real supernet: predictor quality, measured top-1 and measured local-CPU latency of the
selected subnet (part 3 of bench_search.py).

Steps: (1) a measured ONNX Runtime table for ``local-cpu`` (``compress profile``'s function, with its
calibration) and its validation error (``compress latency validate``'s function), in a scratch
tables directory; (2) ``compress.search`` under a budget with ``--rerank``; (3) measured top-1 of the
selected subnet (BN recalibration + validation split) against the prediction and the predictor's
held-out RMSE; (4) the selected subnet's end-to-end latency, measured with the drift-controlled
engine, against the budget and the table's validated error. ``--supernet tiny|small`` trains a
supernet on digits for a few seconds/minutes instead (then accuracies mean little).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def supernet_section(args, out: dict) -> None:
    from compress.latency.measure import MeasureSettings, measure_subnets
    from compress.latency.predict import LatencyModel
    from compress.latency.profile import profile_table
    from compress.latency.validate import validate
    from compress.search.api import search
    from compress.supernet import load_checkpoint

    work = Path(tempfile.mkdtemp(prefix="bench-search-"))
    ckpt = args.supernet
    if str(ckpt) in ("tiny", "small"):
        # "tiny": the test space (latencies of ~20 us: too small to time meaningfully);
        # "small": the full mbv3-small-input space at 32 px, trained briefly on digits
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from _search_fixtures import make_checkpoint

        space = None
        if str(ckpt) == "small":
            from compress.supernet import get_space

            space = get_space("mbv3-small-input", num_classes=10, in_channels=1)
        ckpt = make_checkpoint(work / f"{ckpt}.safetensors", train_steps=60 if args.quick else 400, space=space)
    tables = work / "tables"
    t0 = time.perf_counter()
    # one runtime thread: sub-millisecond subnets on 2 cores time repeatably only single-threaded
    # (README, latency section); the table, its validation and the final check share the setting
    threads = getattr(args, "threads", 1)
    prof = profile_table(
        device="local-cpu",
        runtime="onnxruntime",
        supernet=ckpt,
        tables=tables,
        threads=threads,
        iterations=20 if args.quick else 50,
        calibrate=10 if args.quick else 20,
    )
    val = validate(
        device="local-cpu",
        runtime="onnxruntime",
        supernet=ckpt,
        tables=tables,
        threads=threads,
        samples=8 if args.quick else 30,
        iterations=20 if args.quick else 30,
    )
    table_s = time.perf_counter() - t0
    net = load_checkpoint(ckpt)
    space = net.space
    lat = LatencyModel.load(device="local-cpu", runtime="onnxruntime", space=space, tables=tables)
    g = space.sample_genes(np.random.default_rng(0), 2000)
    budget = round(float(np.quantile(lat.predict_genes(g), 0.3)), 4)

    def run_search(budget_ms: float, out=None):  # noqa: ANN001, ANN202
        return search(
            devices=["local-cpu"],
            runtime="onnxruntime",
            latency_ms=budget_ms,
            supernet=ckpt,
            tables=tables,
            rerank=5,
            predictor_samples=50 if args.quick else 500,
            generations=100 if args.quick else 500,
            out=out,
        )

    res = run_search(budget, work / "run")
    dev = res.devices[0]
    sel = dev.selected
    cfg = space.config_from_dict(sel.config)
    from compress.latency.profile import table_is_raw

    # same basis as the table (raw when its drift was uncontrolled), as validate and calibration use
    ms, drift = measure_subnets(
        net,
        [cfg],
        MeasureSettings(runtime="onnxruntime", iterations=50, threads=threads),
        repeats=3,
        force_raw=table_is_raw(lat.table),
    )
    measured_ms = float(np.median(ms))
    # the selected subnet's top-1 under the predictor's own protocol (the first 256 calibration images
    # and the validation images its training targets used), beside the rerank's number:
    # the predictor's RMSE is measured against that protocol, so this is the like-for-like error
    from compress.search.api import PREDICTOR_CALIB_IMAGES, PREDICTOR_VAL_IMAGES
    from compress.search.dataset import SubnetEvaluator, eval_data_for, subset_eval_data
    from compress.supernet.checkpoint import read_checkpoint_header

    full = eval_data_for(read_checkpoint_header(ckpt), calib_images=512)
    pdata = subset_eval_data(full, calib_images=PREDICTOR_CALIB_IMAGES, val_images=PREDICTOR_VAL_IMAGES)
    top1_predictor_protocol = SubnetEvaluator(net, pdata).top1(cfg)
    mape = float(val.get("mape", float("nan")))
    rmse = float(res.predictor.get("test_rmse", float("nan")))
    # the same search at other budgets (the predictor and its refinement data are shared through the
    # cache): the selected subnet's predicted vs measured top-1 at each, so the error is not one sample
    others = []
    for q in getattr(args, "extra_quantiles", (0.15, 0.6)):
        b = round(float(np.quantile(lat.predict_genes(g), q)), 4)
        ro = run_search(b)
        so = ro.devices[0].selected
        others.append(
            {
                "quantile": q,
                "budget_ms": b,
                "predicted_top1": so.predicted_top1,
                "measured_top1": so.measured_top1,
                "error": so.predicted_top1 - so.measured_top1,
                "refinement": ro.devices[0].refinement,
                "selected_in_predictor_data": ro.devices[0].selected_in_predictor_data,
            }
        )
    out["supernet"] = {
        "checkpoint": str(ckpt),
        "family": space.family,
        "table_build_and_validate_s": round(table_s, 1),
        "threads": threads,
        "table": {
            k: v
            for k, v in (prof.__dict__ if hasattr(prof, "__dict__") else {}).items()
            if isinstance(v, (int, float, str, bool))
        },
        "validation": {k: val.get(k) for k in ("samples", "within_10pct", "mape", "spearman", "repeatability_mape")},
        "budget_ms": budget,
        "latency_source": dev.latency_source,
        "predictor": res.predictor,
        "selected": sel.to_dict(),
        "selection": dev.selection,
        "measured_top1": sel.measured_top1,
        "abs_top1_error": None if sel.measured_top1 is None else abs(sel.measured_top1 - sel.predicted_top1),
        "top1_within_2x_rmse": None
        if sel.measured_top1 is None
        else abs(sel.measured_top1 - sel.predicted_top1) <= 2 * rmse,
        "full_val_images": int(len(full.val_labels)),
        "measured_top1_predictor_protocol": top1_predictor_protocol,
        "abs_top1_error_predictor_protocol": abs(top1_predictor_protocol - sel.predicted_top1),
        "top1_within_rmse_predictor_protocol": abs(top1_predictor_protocol - sel.predicted_top1) <= rmse,
        "measured_latency_ms": measured_ms,
        "measured_over_budget": measured_ms / budget,
        "latency_within_budget_plus_validated_mape": measured_ms <= budget * (1 + mape / 100.0),
        "latency_drift": drift,
        "run_dir": str(work / "run"),
        "refinement": dev.refinement,
        "selected_in_predictor_data": dev.selected_in_predictor_data,
        "other_budgets": others,
        "mean_error_all_budgets": float(
            np.mean([sel.predicted_top1 - sel.measured_top1] + [o["error"] for o in others])
        ),
    }
    print(
        f"[supernet] budget {budget} ms: predicted {sel.predicted_latency_ms:.3f} ms, measured {measured_ms:.3f} ms "
        f"(table MAPE {mape}); predicted top-1 {sel.predicted_top1:.4f}, measured {sel.measured_top1} "
        f"(predictor RMSE {rmse:.4f})",
        file=sys.stderr,
    )
    for o in others:
        print(
            f"[supernet] budget {o['budget_ms']} ms (q{o['quantile']}): predicted top-1 {o['predicted_top1']:.4f}, "
            f"measured {o['measured_top1']:.4f} ({100 * o['error']:+.2f} points)",
            file=sys.stderr,
        )
