"""``compress.search(...)``: find the subnet each device should ship, under its latency budget.

>>> import compress                                                        # doctest: +SKIP
>>> r = compress.search(devices=["jetson"], latency_ms=8.0, supernet="supernet.safetensors")
>>> r.devices[0].selected.config                                           # doctest: +SKIP

Flow: read the checkpoint header (search space), build the accuracy predictor (cached beside the
checkpoint: sampled subnets evaluated after BN recalibration), load one latency model per device
(measured table, else a roofline estimate, announced once), then per device run the searcher under
the constraints; optionally re-rank the top K by measured accuracy; write the run directory.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from compress.core.errors import UsageError
from compress.search.constraints import ConstraintSet
from compress.search.evolution import InfeasibleError, evolve, minimise_metric
from compress.search.pareto import front_indices, knee_index
from compress.search.protocols import AccuracyEstimator, LatencyEstimator, gene_space_for
from compress.search.result import Candidate, DeviceResult, SearchResult

Algorithm = Literal["evolution", "nsga2", "random"]
ALGORITHMS = ("evolution", "nsga2", "random")
PREDICTOR_VERSION = 4
# predictor targets: top-1 on the whole validation split after BN recalibration on a calibration
# subset. Scoring only 1,000 images (version 3) left ~0.6 points of sampling noise in each target,
# as much as the spread between subnets, and the search then picked subnets the predictor
# over-rated by 1.2-1.5 points (README `search`, "winner's curse").
PREDICTOR_VAL_IMAGES: int | None = None
PREDICTOR_CALIB_IMAGES = 256
# candidates scored per refinement round (or --rerank K when larger)
REFINE_TOP = 5


def _log(console: Any, msg: str) -> None:
    if console is not None:
        console.print(msg)


def resolve_checkpoint(supernet: str | Path | None) -> Path:
    if supernet is None:
        from compress.supernet import default_checkpoint_path

        return Path(default_checkpoint_path())
    p = Path(supernet).expanduser()
    if not p.is_file():
        raise UsageError(f"supernet checkpoint not found: {p}")
    return p


@dataclass
class PredictorState:
    """The accuracy predictor with the data it was fitted on, so a search can refine it.

    ``evaluator`` scores subnets under the predictor's protocol (its training targets);
    ``full_evaluator`` under the full ``calib_images`` / ``val_images`` protocol (``--rerank``).
    """

    predictor: Any
    info: dict[str, Any]
    genes: np.ndarray
    top1: np.ndarray
    space: Any
    cache: Path
    eval_key: str
    key: str
    seed: int
    evaluator: Any
    full_evaluator: Any

    def known(self) -> set[bytes]:
        return {row.tobytes() for row in self.space.canonical_genes(self.genes)}

    def measure(self, genes: np.ndarray) -> np.ndarray:
        """Top-1 of these subnets under the predictor's protocol: from the pair cache when an earlier
        search measured them, else evaluated now (and cached)."""
        from compress.search.dataset import add_refined_pairs, cached_top1

        got = cached_top1(self.space, self.cache, self.eval_key, genes)
        todo = [i for i, v in enumerate(got) if v is None]
        for i in todo:
            got[i] = self.evaluator.top1(self.space.from_genes(genes[i]))
        add_refined_pairs(self.space, self.cache, self.eval_key, genes[todo], np.asarray([got[i] for i in todo]))
        return np.asarray(got, dtype=np.float64)

    def add(self, genes: np.ndarray, top1: np.ndarray) -> None:
        """Add measured subnets to the training data, refit the predictor (cached by the rows added)."""
        self.genes = np.concatenate([self.genes, genes])
        self.top1 = np.concatenate([self.top1, top1])
        self.predictor, self.info = _fit_cached(
            self.space,
            self.genes,
            self.top1,
            cache=self.cache,
            key=self.key,
            seed=self.seed,
            n_refined=self.info.get("refined_subnets", 0) + len(top1),
            info={k: v for k, v in self.info.items() if k in ("targets", "evaluation_s")},
        )


def _fit_cached(
    space: Any,
    genes: np.ndarray,
    top1: np.ndarray,
    *,
    cache: Path,
    key: str,
    seed: int,
    n_refined: int,
    info: dict[str, Any],
    console: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """Load the predictor fitted on exactly these rows from the cache, or fit and cache it."""
    from compress.core.runs import sha256_json
    from compress.search.predictor import LayeredPredictor, fit_predictor

    suffix = f"-r{n_refined}-{sha256_json(genes[len(genes) - n_refined :].tolist())[:12]}" if n_refined else ""
    pdir = cache / f"{key}{suffix}"
    if (pdir / "predictor.json").is_file():
        try:
            pred = LayeredPredictor.load(pdir, space.encode_genes)
            _log(console, f"[dim]accuracy predictor: cached ({pdir})[/dim]")
            return pred, {
                **pred.meta.get("report", {}),
                **info,
                "refined_subnets": n_refined,
                "cache": str(pdir),
                "cached": True,
            }
        except UsageError:
            pass  # damaged cache: refit below
    pred, rep = fit_predictor(genes, top1, space.encode_genes, seed=seed)
    pred.save(pdir, extra={"samples": int(len(top1)), "refined_subnets": n_refined})
    return pred, {**rep.summary(), **info, "refined_subnets": n_refined, "cache": str(pdir), "cached": False}


def build_accuracy_predictor(
    ckpt: Path,
    header: dict[str, Any],
    space: Any,
    *,
    sha: str,
    samples: int,
    data_seed: int,
    dataset: str | None,
    calib_images: int,
    val_images: int | None,
    console: Any = None,
    progress: bool = True,
    predictor_val_images: int | None = PREDICTOR_VAL_IMAGES,
    predictor_calib_images: int | None = PREDICTOR_CALIB_IMAGES,
) -> PredictorState:
    """Evaluate sampled subnets (cached pairs first) and fit the accuracy predictor (cached too).

    The predictor's training targets are measured on the first ``predictor_val_images`` validation
    images (``None``: all) after BN recalibration on the first ``predictor_calib_images`` calibration
    images; both are recorded in the predictor report and are part of the cache key. Subnets that
    searches add while refining (``--refine``) are kept in the pair cache: a repeated search finds
    their measurements there and refits the same predictors (cached too), so it gives the same result.
    """
    from compress.core.runs import sha256_json
    from compress.search.dataset import SubnetEvaluator, cache_dir_for, collect_pairs, eval_data_for, subset_eval_data
    from compress.supernet import load_checkpoint

    full = eval_data_for(header, dataset=dataset, calib_images=calib_images, val_images=val_images)
    data = subset_eval_data(full, calib_images=predictor_calib_images, val_images=predictor_val_images)
    eval_key = sha256_json({"data": data.meta})[:16]
    cache = cache_dir_for(ckpt, sha)
    net = load_checkpoint(ckpt)
    evaluator = SubnetEvaluator(net, data)
    t_eval = time.perf_counter()
    _log(
        console,
        f"accuracy predictor: {samples} sampled subnets (BN recalibration on {data.meta['calib_images']} calib "
        f"images, top-1 on {data.meta['val_images']} val images of {data.meta['dataset']}); cache {cache}",
    )
    if progress and console is not None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("subnets"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("eval", total=None)

            def tick(i: int, n: int) -> None:
                bar.update(task, completed=i, total=n)

            genes, top1 = collect_pairs(
                space, evaluator, cache, n=samples, seed=data_seed, eval_key=eval_key, progress=tick
            )
    else:
        genes, top1 = collect_pairs(space, evaluator, cache, n=samples, seed=data_seed, eval_key=eval_key)
    eval_s = time.perf_counter() - t_eval
    key = f"predictor-v{PREDICTOR_VERSION}-{eval_key}-n{samples}-s{data_seed}"
    pred, info = _fit_cached(
        space,
        genes,
        top1,
        cache=cache,
        key=key,
        seed=data_seed,
        n_refined=0,
        info={"targets": data.meta, "evaluation_s": eval_s},
        console=console,
    )
    return PredictorState(
        predictor=pred,
        info=info,
        genes=genes,
        top1=top1,
        space=space,
        cache=cache,
        eval_key=eval_key,
        key=key,
        seed=data_seed,
        evaluator=evaluator,
        full_evaluator=evaluator if data is full else SubnetEvaluator(net, full),
    )


def _budgets(devices: Sequence[str], latency_ms: float | Sequence[float] | None) -> list[float | None]:
    if latency_ms is None:
        return [None] * len(devices)
    vals = [float(latency_ms)] if isinstance(latency_ms, (int, float)) else [float(v) for v in latency_ms]
    if len(vals) == 1:
        vals = vals * len(devices)
    if len(vals) != len(devices):
        raise UsageError(f"give one --latency-ms for all devices or one per --device ({len(devices)}), got {len(vals)}")
    for v in vals:
        if not v > 0:
            raise UsageError(f"--latency-ms must be positive, got {v:g}")
    return vals


def _candidates(space: Any, genes: np.ndarray, acc: np.ndarray, values: dict[str, np.ndarray]) -> list[Candidate]:
    return [
        Candidate(
            config=space.from_genes(g).to_dict(),
            predicted_latency_ms=float(values["latency_ms"][i]),
            predicted_top1=float(acc[i]),
            params=int(values["params"][i]),
            macs=int(values["macs"][i]),
        )
        for i, g in enumerate(genes)
    ]


def search(
    *,
    devices: Sequence[str],
    latency_ms: float | Sequence[float] | None = None,
    pareto: bool = False,
    supernet: str | Path | None = None,
    runtime: str | None = None,
    precision: str | None = None,
    batch: int = 1,
    max_params: int | None = None,
    max_macs: int | None = None,
    channel_multiple: int | None = None,
    algorithm: Algorithm = "evolution",
    rerank: int = 0,
    refine: int = 2,
    seed: int = 0,
    out: str | Path | None = None,
    population: int = 100,
    generations: int = 500,
    predictor_samples: int = 50,
    predictor_seed: int = 0,
    dataset: str | None = None,
    calib_images: int = 512,
    val_images: int | None = None,
    tables: str | Path | None = None,
    profiles: str | Path | None = None,
    accuracy: AccuracyEstimator | None = None,
    latency: dict[str, LatencyEstimator] | None = None,
    console: Any = None,
    progress: bool = True,
    command: str = "compress search",
    predictor_val_images: int | None = PREDICTOR_VAL_IMAGES,
    predictor_calib_images: int | None = PREDICTOR_CALIB_IMAGES,
) -> SearchResult:
    """Search the supernet for the subnet each of ``devices`` should ship.

    ``latency_ms``: a budget for all devices or one per device; without it (or with ``pareto``) the
    result is each device's Pareto front and ``selected`` is its knee point. ``rerank=K`` evaluates
    the top K candidates for real (BN recalibration + validation split) and picks by measured top-1.
    ``refine=R`` runs up to R refinement rounds first: the searcher's top candidates (``max(rerank, 5)``)
    are scored for real under the predictor's protocol, added to its training data (cached), the
    predictor is refitted and the search repeated; each round's predicted - measured error is reported.
    ``accuracy`` / ``latency`` inject estimators (tests, custom predictors) instead of building them.
    Same ``seed``, same result.
    """
    from compress.core.runs import RunDir, sha256_file
    from compress.latency.space_cost import SpaceCost
    from compress.supernet import SearchSpace
    from compress.supernet.checkpoint import read_checkpoint_header

    if not devices:
        raise UsageError("give at least one --device")
    if len(set(devices)) != len(devices):
        raise UsageError("each --device may be given only once")
    if algorithm not in ALGORITHMS:
        from compress.core.errors import unknown

        raise unknown("algorithm", str(algorithm), ALGORITHMS)
    if latency_ms is not None and pareto:
        raise UsageError("give either --latency-ms or --pareto, not both")
    if refine < 0:
        raise UsageError(f"--refine must be >= 0, got {refine}")
    if rerank < 0 or batch < 1 or population < 4 or generations < 1 or predictor_samples < 10:
        raise UsageError(
            "--rerank must be >= 0, --batch >= 1, population >= 4, generations >= 1, predictor samples >= 10"
        )
    if channel_multiple is not None and channel_multiple < 1:
        raise UsageError(f"--channel-multiple must be >= 1, got {channel_multiple}")
    budgets = _budgets(devices, latency_ms)
    ckpt = resolve_checkpoint(supernet)
    header = read_checkpoint_header(ckpt)
    space = SearchSpace.from_dict(header["space"])
    sha = sha256_file(ckpt)
    supernet_info = {"path": str(ckpt.resolve()), "sha256": sha, "family": space.family, "space_hash": space.hash()}

    from compress.hardware import get_profile

    profs = [get_profile(d, profiles_dir=profiles) for d in devices]
    # latency models first: a bad device/runtime fails before any expensive evaluation
    lat_models: list[tuple[Any, str, str, LatencyEstimator]] = []
    for prof in profs:
        rt, prec = prof.check_runtime(runtime), prof.check_precision(precision)
        if latency is not None and prof.name in latency:
            lat_models.append((prof, rt, prec, latency[prof.name]))
            continue
        from compress.latency.predict import LatencyModel

        lat_models.append(
            (
                prof,
                rt,
                prec,
                LatencyModel.load(
                    device=prof.table_device,
                    runtime=rt,
                    precision=prec,
                    batch=batch,
                    space=space,
                    tables=tables,
                    profiles=profiles,
                ),
            )
        )
    cost = SpaceCost(space)
    gs = gene_space_for(space)
    # the fastest subnet per device before the accuracy predictor is fitted: an infeasible budget (or
    # limits no subnet meets) fails in a second, not after the predictor's training evaluations
    fastest = [
        _fastest(space, gs, cost, lat, budget, prof, rt, prec, batch, seed, di, max_params, max_macs, channel_multiple)
        for di, ((prof, rt, prec, lat), budget) in enumerate(zip(lat_models, budgets))
    ]
    evaluator = None
    eval_meta = None
    state: PredictorState | None = None
    if accuracy is None:
        state = build_accuracy_predictor(
            ckpt,
            header,
            space,
            sha=sha,
            samples=predictor_samples,
            data_seed=predictor_seed,
            dataset=dataset,
            calib_images=calib_images,
            val_images=val_images,
            console=console,
            progress=progress,
            predictor_val_images=predictor_val_images,
            predictor_calib_images=predictor_calib_images,
        )
        accuracy = state.predictor
        evaluator, eval_meta = state.full_evaluator, state.full_evaluator.data.meta
    else:
        pred_info = {"kind": "injected", "type": type(accuracy).__name__}

    results: list[DeviceResult] = []
    for di, ((prof, rt, prec, lat), budget) in enumerate(zip(lat_models, budgets)):
        metrics = {"latency_ms": lat.predict_genes, "params": cost.params_genes, "macs": cost.macs_genes}
        limits: dict[str, float | None] = {"latency_ms": budget, "params": max_params, "macs": max_macs}
        if channel_multiple and channel_multiple > 1:
            metrics["channel_violations"] = lambda g, m=channel_multiple: cost.channel_violations_genes(g, m)
            limits["channel_violations"] = 0.0
        cs = ConstraintSet(metrics, limits)
        t0 = time.perf_counter()
        g_min, min_ms = fastest[di]
        pareto_mode = budget is None

        def run_searcher(acc: AccuracyEstimator) -> tuple[Any, str]:
            if pareto_mode or algorithm == "nsga2":
                from compress.search.nsga2 import nsga2_search

                return nsga2_search(
                    gs,
                    acc,
                    cs,
                    seed=int(np.random.default_rng([seed, di, 1]).integers(2**31 - 1)),
                    population=population,
                    generations=generations if not pareto_mode else min(generations, 200),
                ), "nsga2"
            if algorithm == "random":
                from compress.search.random import random_search

                return random_search(
                    gs, acc, cs, rng=np.random.default_rng([seed, di, 2]), samples=population * generations
                ), "random"
            return evolve(
                gs,
                acc,
                cs,
                rng=np.random.default_rng([seed, di, 2]),
                population=population,
                generations=generations,
                seeds=g_min[None, :],
            ), "evolution"

        r, algo_used = run_searcher(accuracy)
        t_refine = time.perf_counter()
        rounds: list[dict[str, Any]] = []
        for rd in range(refine if state is not None else 0):
            # refinement: score the searcher's top candidates for real under the predictor's protocol
            # (each prediction was made before its measurement), add them to the training data, refit
            pool = _rerank_pool(space, r, _front(space, r), pareto_mode, max(rerank, REFINE_TOP))
            known = state.known()
            fresh = [c for c in pool if _genes_of(space, c.config) not in known]
            if not fresh:
                rounds.append({"round": rd + 1, "evaluated": 0, "note": "every top candidate was already evaluated"})
                break
            g_new = np.stack([space.to_genes(space.config_from_dict(c.config)) for c in fresh])
            y_new = state.measure(g_new)
            err = np.asarray([c.predicted_top1 for c in fresh]) - y_new
            rounds.append(
                {
                    "round": rd + 1,
                    "evaluated": len(fresh),
                    "mean_error": float(err.mean()),
                    "max_abs_error": float(np.abs(err).max()),
                    "best_measured_top1": float(y_new.max()),
                }
            )
            _log(
                console,
                f"[dim]refine {rd + 1}/{refine} ({prof.name}): {len(fresh)} top candidates scored, predicted - "
                f"measured {100 * err.mean():+.2f} points on average; refitting the predictor[/dim]",
            )
            state.add(g_new, y_new)
            accuracy = state.predictor
            r, algo_used = run_searcher(accuracy)
        refine_s = time.perf_counter() - t_refine if rounds else 0.0
        search_s = time.perf_counter() - t0 - refine_s
        front = _front(space, r)
        if pareto_mode:
            k = knee_index(
                np.array([c.predicted_latency_ms for c in front]), np.array([c.predicted_top1 for c in front])
            )
            selected, how = front[k], "knee of the predicted Pareto front"
        else:
            top = space.canonical_genes(r.genes[:1])
            selected = _candidates(space, top, r.scores[:1], {k: v[:1] for k, v in r.values.items()})[0]
            how = "highest predicted top-1 within the budget"
        if rerank:
            if evaluator is None:
                evaluator = _evaluator_for(ckpt, header, dataset, calib_images, val_images)
                eval_meta = evaluator.data.meta
            pool = _rerank_pool(space, r, front, pareto_mode, rerank)
            for c in pool:
                c.measured_top1 = evaluator.top1(space.config_from_dict(c.config))
            measured = {json_key(c.config): c.measured_top1 for c in pool}
            for c in front:
                c.measured_top1 = measured.get(json_key(c.config), c.measured_top1)
            if pareto_mode:
                pts = sorted(pool, key=lambda c: c.predicted_latency_ms)
                k = knee_index(
                    np.array([c.predicted_latency_ms for c in pts]), np.array([c.measured_top1 for c in pts])
                )
                selected, how = pts[k], f"knee of {len(pool)} front points by measured top-1 (--rerank {rerank})"
            else:
                selected = max(pool, key=lambda c: (c.measured_top1, c.predicted_top1))
                how = f"highest measured top-1 among the top {len(pool)} by predicted top-1 (--rerank {rerank})"
        results.append(
            DeviceResult(
                device=prof.name,
                runtime=rt,
                precision=prec,
                batch=batch,
                budget_ms=budget,
                latency_source=str(getattr(lat, "source", "estimated")),
                selected=selected,
                pareto=front,
                algorithm=algo_used,
                selection=how,
                search_s=search_s,
                refine_s=refine_s,
                evaluations=r.evaluations,
                fallbacks=r.fallbacks,
                min_latency_ms=min_ms,
                constraints=cs.describe(),
                latency_info=lat.info() if hasattr(lat, "info") else {},
                refinement=rounds,
                selected_in_predictor_data=state is not None and _genes_of(space, selected.config) in state.known(),
            )
        )
    if state is not None:
        pred_info = state.info
    res = SearchResult(
        supernet=supernet_info,
        predictor=pred_info,
        devices=results,
        seed=seed,
        algorithm=algorithm,
        eval_data=eval_meta,
    )
    if out is not None:
        from compress.search.result import write_run

        run = RunDir(out, command=command, seeds={"search": seed, "predictor": predictor_seed})
        run.add_input("supernet", ckpt)
        run.set(
            "search",
            {
                "devices": list(devices),
                "budgets_ms": budgets,
                "algorithm": algorithm,
                "population": population,
                "generations": generations,
                "rerank": rerank,
                "refine": refine,
            },
        )
        write_run(res, run)
    return res


def _genes_of(space: Any, config: dict[str, Any]) -> bytes:
    """Canonical gene bytes of a config dict (the key :meth:`PredictorState.known` uses)."""
    return space.canonical_genes(space.to_genes(space.config_from_dict(config))[None])[0].tobytes()


def _front(space: Any, r: Any) -> list[Candidate]:
    """The predicted Pareto front over every feasible row the searcher scored (canonical, de-duplicated)."""
    ag = space.canonical_genes(r.archive_genes)
    _, uniq = np.unique(ag, axis=0, return_index=True)
    uniq = np.sort(uniq)
    fi = uniq[front_indices(r.archive_values["latency_ms"][uniq], r.archive_scores[uniq])]
    return _candidates(space, ag[fi], r.archive_scores[fi], {k: v[fi] for k, v in r.archive_values.items()})


def json_key(cfg: dict[str, Any]) -> str:
    import json

    return json.dumps(cfg, sort_keys=True, separators=(",", ":"))


def _rerank_pool(space: Any, r: Any, front: list[Candidate], pareto_mode: bool, k: int) -> list[Candidate]:
    """Top ``k`` distinct candidates by predicted top-1 (budget mode) or ``k`` points spread on the front."""
    if pareto_mode:
        idx = np.unique(np.linspace(0, len(front) - 1, num=min(k, len(front))).round().astype(int))
        return [front[i] for i in idx]
    g = space.canonical_genes(r.archive_genes)
    order = np.argsort(-r.archive_scores, kind="stable")
    seen: set[bytes] = set()
    pick: list[int] = []
    for i in order:
        key = g[i].tobytes()
        if key not in seen:
            seen.add(key)
            pick.append(int(i))
            if len(pick) == k:
                break
    idx = np.asarray(pick)
    return _candidates(space, g[idx], r.archive_scores[idx], {n: v[idx] for n, v in r.archive_values.items()})


def _evaluator_for(
    ckpt: Path, header: dict[str, Any], dataset: str | None, calib_images: int, val_images: int | None
) -> Any:
    from compress.search.dataset import SubnetEvaluator, eval_data_for
    from compress.supernet import load_checkpoint

    return SubnetEvaluator(
        load_checkpoint(ckpt), eval_data_for(header, dataset=dataset, calib_images=calib_images, val_images=val_images)
    )


def _infeasible_other(
    device: str, max_params: int | None, max_macs: int | None, channel_multiple: int | None, cost: Any, space: Any
) -> str:
    lo = space.count(space.min_config())
    parts = []
    if max_params is not None and lo.params > max_params:
        parts.append(f"--max-params {max_params} is below the smallest subnet's {lo.params} params")
    if max_macs is not None and lo.macs > max_macs:
        parts.append(f"--max-macs {max_macs} is below the smallest subnet's {lo.macs} MACs")
    if channel_multiple:
        parts.append(f"or no subnet has every channel count a multiple of {channel_multiple}")
    detail = "; ".join(parts) or "no subnet meets them"
    return (
        f"no subnet meets the constraints on {device}: {detail}; relax --max-params / --max-macs / --channel-multiple"
    )


def _fastest(
    space: Any,
    gs: Any,
    cost: Any,
    lat: Any,
    budget: float | None,
    prof: Any,
    rt: str,
    prec: str,
    batch: int,
    seed: int,
    di: int,
    max_params: int | None,
    max_macs: int | None,
    channel_multiple: int | None,
) -> tuple[np.ndarray, float]:
    """The fastest config meeting the non-latency limits (its genes, its ms): reported when the budget is
    infeasible, and put in the first population so a tight budget never starts empty."""
    metrics = {"latency_ms": lat.predict_genes, "params": cost.params_genes, "macs": cost.macs_genes}
    limits: dict[str, float | None] = {"latency_ms": budget, "params": max_params, "macs": max_macs}
    if channel_multiple and channel_multiple > 1:
        metrics["channel_violations"] = lambda g, m=channel_multiple: cost.channel_violations_genes(g, m)
        limits["channel_violations"] = 0.0
    cs = ConstraintSet(metrics, limits)
    rng = np.random.default_rng([seed, di])
    anchors = np.stack([space.to_genes(space.min_config())])
    try:
        g_min, v_min = minimise_metric(gs, cs, "latency_ms", rng=rng, seeds=anchors)
    except InfeasibleError:
        raise UsageError(_infeasible_other(prof.name, max_params, max_macs, channel_multiple, cost, space)) from None
    min_ms = float(v_min["latency_ms"][0])
    if budget is not None and min_ms > budget:
        cfg = space.from_genes(g_min)
        mode = f" at power mode {prof.power_mode}" if getattr(prof, "power_mode", None) else ""
        raise UsageError(
            f"latency budget {budget:g} ms is infeasible on {prof.name}{mode} ({rt}, {prec}, batch {batch}, "
            f"{lat.source} latency): the smallest reachable is {min_ms:.3f} ms with config "
            f"{cfg.key()}; raise --latency-ms to at least {min_ms:.3f}"
        )
    return g_min, min_ms
