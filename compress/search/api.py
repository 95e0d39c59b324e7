"""``compress.search(...)``: find the subnet each device should ship, under its latency budget.

>>> import compress                                                        # doctest: +SKIP
>>> r = compress.search(devices=["jetson"], latency_ms=8.0, supernet="supernet.safetensors")
>>> r.devices[0].selected.config                                           # doctest: +SKIP

Flow, one named step each: check the request (:func:`_budgets`), read the checkpoint header
(:func:`_load_supernet`), load one latency model per device (:func:`_latency_models`: measured table,
else a roofline estimate, announced once), find each device's fastest feasible subnet (:func:`_fastest`:
an infeasible budget fails in a second), build the accuracy predictor (:func:`build_accuracy_predictor`,
cached beside the checkpoint), then per device (:func:`_search_device`) run the registered searcher
under the constraints, refine the predictor (:func:`_refine`), select (:func:`_select`) and optionally
re-rank the top K by measured accuracy (:func:`_rerank`); write the run directory (:func:`_write`).
Options and their defaults: :class:`compress.search.options.SearchOptions`; searchers by name:
:data:`compress.search.registry.SEARCHERS`. Progress: :class:`compress.core.progress.Progress`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import UsageError
from compress.core.progress import Progress, progress_or_log, tracked
from compress.search.constraints import ConstraintSet
from compress.search.evolution import EvolutionResult, InfeasibleError, minimise_metric
from compress.search.options import (
    PREDICTOR_CALIB_IMAGES as PREDICTOR_CALIB_IMAGES,
    PREDICTOR_VAL_IMAGES as PREDICTOR_VAL_IMAGES,
    SearchOptions,
    SearchRequest,
    request_from,
)
from compress.search.pareto import front_indices, knee_index
from compress.search.protocols import AccuracyEstimator, LatencyEstimator, gene_space_for
from compress.search.result import Candidate, DeviceResult, SearchResult
from compress.search.searchers import SEARCHERS, SearchTask

PREDICTOR_VERSION = 4
# candidates scored per refinement round (or --rerank K when larger)
REFINE_TOP = 5
# without a budget the front always comes from NSGA-II, with at most this many generations
PARETO_SEARCHER = "nsga2"
PARETO_MAX_GENERATIONS = 200


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
    progress: Progress | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Load the predictor fitted on exactly these rows from the cache, or fit and cache it."""
    from compress.core.runs import sha256_json
    from compress.search.predictor import LayeredPredictor, fit_predictor

    suffix = f"-r{n_refined}-{sha256_json(genes[len(genes) - n_refined :].tolist())[:12]}" if n_refined else ""
    pdir = cache / f"{key}{suffix}"
    if (pdir / "predictor.json").is_file():
        try:
            pred = LayeredPredictor.load(pdir, space.encode_genes)
            progress_or_log(progress).note(f"accuracy predictor: cached ({pdir})")
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
    progress: Progress | None = None,
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
    p = progress_or_log(progress)
    p.note(
        f"accuracy predictor: {samples} sampled subnets (BN recalibration on {data.meta['calib_images']} calib "
        f"images, top-1 on {data.meta['val_images']} val images of {data.meta['dataset']}); cache {cache}"
    )
    with tracked(p, "subnets") as step:
        genes, top1 = collect_pairs(
            space, evaluator, cache, n=samples, seed=data_seed, eval_key=eval_key, progress=lambda i, n: step(i, n)
        )
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
        progress=progress,
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


@dataclass
class _Target:
    """One device of the request: its profile, runtime, precision, latency model and budget."""

    prof: Any
    runtime: str
    precision: str
    lat: LatencyEstimator
    budget: float | None


@dataclass
class _Run:
    """What every per-device step shares: the request, the space, the accuracy source."""

    req: SearchRequest
    ckpt: Path
    header: dict[str, Any]
    space: Any
    cost: Any
    gs: Any
    progress: Progress
    accuracy: AccuracyEstimator | None = None
    state: PredictorState | None = None
    evaluator: Any = None
    eval_meta: dict[str, Any] | None = None
    pred_info: dict[str, Any] = field(default_factory=dict)

    @property
    def opts(self) -> SearchOptions:
        return self.req.options


def search(
    request: SearchRequest | None = None,
    *,
    accuracy: AccuracyEstimator | None = None,
    latency: dict[str, LatencyEstimator] | None = None,
    out: str | Path | None = None,
    progress: Progress | None = None,
    command: str = "compress search",
    **fields: Any,
) -> SearchResult:
    """Search the supernet for the subnet each of ``devices`` should ship.

    Give a :class:`~compress.search.options.SearchRequest`, or its fields as keywords (``devices=``,
    ``latency_ms=``, ``supernet=``, ``seed=`` ... and any :class:`~compress.search.options.SearchOptions`
    field such as ``population=``; unknown keywords are usage errors with a close match).
    ``latency_ms``: a budget for all devices or one per device; without it (or with ``pareto``) the
    result is each device's Pareto front and ``selected`` is its knee point. ``rerank=K`` evaluates
    the top K candidates for real (BN recalibration + validation split) and picks by measured top-1.
    ``refine=R`` runs up to R refinement rounds first: the searcher's top candidates (``max(rerank, 5)``)
    are scored for real under the predictor's protocol, added to its training data (cached), the
    predictor is refitted and the search repeated; each round's predicted - measured error is reported.
    ``accuracy`` / ``latency`` inject estimators (tests, custom predictors) instead of building them.
    ``progress`` receives the narrative and the evaluation count (default: the ``compress`` logger).
    Same ``seed``, same result.
    """
    req = request_from(request, fields)
    budgets = _check_request(req)
    ckpt, header, space, supernet_info = _load_supernet(req)
    from compress.latency.space_cost import SpaceCost

    # latency models first: a bad device/runtime fails before any expensive evaluation
    targets = [
        _Target(prof, rt, prec, lat, budget)
        for (prof, rt, prec, lat), budget in zip(_latency_models(req, space, latency), budgets)
    ]
    run = _Run(req, ckpt, header, space, SpaceCost(space), gene_space_for(space), progress_or_log(progress))
    # the fastest subnet per device before the accuracy predictor is fitted: an infeasible budget (or
    # limits no subnet meets) fails in a second, not after the predictor's training evaluations
    fastest = [_fastest_for(run, di, t) for di, t in enumerate(targets)]
    _accuracy_source(run, accuracy, supernet_info["sha256"])
    results = [_search_device(run, di, t, fastest[di]) for di, t in enumerate(targets)]
    if run.state is not None:
        run.pred_info = run.state.info
    res = SearchResult(
        supernet=supernet_info,
        predictor=run.pred_info,
        devices=results,
        seed=req.seed,
        algorithm=run.opts.algorithm,
        eval_data=run.eval_meta,
    )
    if out is not None:
        _write(res, run, budgets, out=out, command=command)
    return res


def _check_request(req: SearchRequest) -> list[float | None]:
    """The checks no file is needed for; returns one budget (or None) per device."""
    if not req.devices:
        raise UsageError("give at least one --device")
    if len(set(req.devices)) != len(req.devices):
        raise UsageError("each --device may be given only once")
    if req.latency_ms is not None and req.pareto:
        raise UsageError("give either --latency-ms or --pareto, not both")
    return _budgets(req.devices, req.latency_ms)


def _load_supernet(req: SearchRequest) -> tuple[Path, dict[str, Any], Any, dict[str, Any]]:
    """The checkpoint, its header, its search space and the ``supernet`` record of the result."""
    from compress.core.runs import sha256_file
    from compress.supernet import SearchSpace
    from compress.supernet.checkpoint import read_checkpoint_header

    ckpt = resolve_checkpoint(req.supernet)
    header = read_checkpoint_header(ckpt)
    space = SearchSpace.from_dict(header["space"])
    sha = sha256_file(ckpt)
    info = {"path": str(ckpt.resolve()), "sha256": sha, "family": space.family, "space_hash": space.hash()}
    return ckpt, header, space, info


def _latency_models(
    req: SearchRequest, space: Any, injected: dict[str, LatencyEstimator] | None
) -> list[tuple[Any, str, str, LatencyEstimator]]:
    """Per device: (profile, runtime, precision, latency model), an injected one where given."""
    from compress.hardware import get_profile
    from compress.latency.predict import LatencyModel

    models: list[tuple[Any, str, str, LatencyEstimator]] = []
    for prof in [get_profile(d, profiles_dir=req.profiles) for d in req.devices]:
        rt, prec = prof.check_runtime(req.runtime), prof.check_precision(req.precision)
        if injected is not None and prof.name in injected:
            models.append((prof, rt, prec, injected[prof.name]))
            continue
        lat = LatencyModel.load(
            device=prof.table_device,
            runtime=rt,
            precision=prec,
            batch=req.batch,
            space=space,
            tables=req.tables,
            profiles=req.profiles,
        )
        models.append((prof, rt, prec, lat))
    return models


def _constraint_set(
    cost: Any,
    lat: Any,
    budget: float | None,
    max_params: int | None,
    max_macs: int | None,
    channel_multiple: int | None,
) -> ConstraintSet:
    """Latency within ``budget``, params / MACs within their limits, channels multiples of ``channel_multiple``."""
    metrics = {"latency_ms": lat.predict_genes, "params": cost.params_genes, "macs": cost.macs_genes}
    limits: dict[str, float | None] = {"latency_ms": budget, "params": max_params, "macs": max_macs}
    if channel_multiple and channel_multiple > 1:
        metrics["channel_violations"] = lambda g, m=channel_multiple: cost.channel_violations_genes(g, m)
        limits["channel_violations"] = 0.0
    return ConstraintSet(metrics, limits)


def _fastest_for(run: _Run, di: int, t: _Target) -> tuple[np.ndarray, float]:
    o = run.opts
    return _fastest(
        run.space,
        run.gs,
        run.cost,
        t.lat,
        t.budget,
        t.prof,
        t.runtime,
        t.precision,
        run.req.batch,
        run.req.seed,
        di,
        o.max_params,
        o.max_macs,
        o.channel_multiple,
    )


def _accuracy_source(run: _Run, accuracy: AccuracyEstimator | None, sha: str) -> None:
    """The injected estimator, or the predictor fitted on evaluated subnets (with its evaluators)."""
    if accuracy is not None:
        run.accuracy = accuracy
        run.pred_info = {"kind": "injected", "type": type(accuracy).__name__}
        return
    req, o = run.req, run.opts
    run.state = build_accuracy_predictor(
        run.ckpt,
        run.header,
        run.space,
        sha=sha,
        samples=o.predictor_samples,
        data_seed=req.predictor_seed,
        dataset=req.dataset,
        calib_images=o.calib_images,
        val_images=o.val_images,
        progress=run.progress,
        predictor_val_images=o.predictor_val_images,
        predictor_calib_images=o.predictor_calib_images,
    )
    run.accuracy = run.state.predictor
    run.evaluator, run.eval_meta = run.state.full_evaluator, run.state.full_evaluator.data.meta


def _run_searcher(run: _Run, di: int, cs: ConstraintSet, anchor: np.ndarray, pareto_mode: bool) -> tuple[Any, str]:
    """Dispatch to the registered searcher (the Pareto front: always NSGA-II); returns (result, its name)."""
    o = run.opts
    name = PARETO_SEARCHER if pareto_mode else o.algorithm
    if run.accuracy is None:
        from compress.core.errors import InternalError

        raise InternalError("the searcher was run before the accuracy source was built")
    task = SearchTask(
        space=run.gs,
        accuracy=run.accuracy,
        constraints=cs,
        seed=run.req.seed,
        stream=di,
        population=o.population,
        generations=min(o.generations, PARETO_MAX_GENERATIONS) if pareto_mode else o.generations,
        anchors=anchor[None, :],
    )
    return SEARCHERS.get(name)(task), name


def _search_device(run: _Run, di: int, t: _Target, fastest: tuple[np.ndarray, float]) -> DeviceResult:
    """Search, refine, select and re-rank for one device."""
    o = run.opts
    cs = _constraint_set(run.cost, t.lat, t.budget, o.max_params, o.max_macs, o.channel_multiple)
    t0 = time.perf_counter()
    g_min, min_ms = fastest
    pareto_mode = t.budget is None
    r, algo_used = _run_searcher(run, di, cs, g_min, pareto_mode)
    t_refine = time.perf_counter()
    r, algo_used, rounds = _refine(run, di, t, cs, g_min, pareto_mode, r, algo_used)
    refine_s = time.perf_counter() - t_refine if rounds else 0.0
    search_s = time.perf_counter() - t0 - refine_s
    front = _front(run.space, r)
    selected, how = _select(run.space, r, front, pareto_mode)
    if o.rerank:
        selected, how = _rerank(run, r, front, pareto_mode, selected, how)
    return DeviceResult(
        device=t.prof.name,
        runtime=t.runtime,
        precision=t.precision,
        batch=run.req.batch,
        budget_ms=t.budget,
        latency_source=str(getattr(t.lat, "source", "estimated")),
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
        latency_info=t.lat.info() if hasattr(t.lat, "info") else {},
        refinement=rounds,
        selected_in_predictor_data=run.state is not None and _genes_of(run.space, selected.config) in run.state.known(),
    )


def _refine(
    run: _Run,
    di: int,
    t: _Target,
    cs: ConstraintSet,
    g_min: np.ndarray,
    pareto_mode: bool,
    r: EvolutionResult,
    algo_used: str,
) -> tuple[EvolutionResult, str, list[dict[str, Any]]]:
    """Refinement rounds: score the searcher's top candidates for real under the predictor's protocol
    (each prediction was made before its measurement), add them to the training data, refit, search again."""
    o, state, space = run.opts, run.state, run.space
    rounds: list[dict[str, Any]] = []
    if state is None:
        return r, algo_used, rounds
    for rd in range(o.refine):
        pool = _rerank_pool(space, r, _front(space, r), pareto_mode, max(o.rerank, REFINE_TOP))
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
        run.progress.note(
            f"refine {rd + 1}/{o.refine} ({t.prof.name}): {len(fresh)} top candidates scored, predicted - "
            f"measured {100 * err.mean():+.2f} points on average; refitting the predictor"
        )
        state.add(g_new, y_new)
        run.accuracy = state.predictor
        r, algo_used = _run_searcher(run, di, cs, g_min, pareto_mode)
    return r, algo_used, rounds


def _select(space: Any, r: EvolutionResult, front: list[Candidate], pareto_mode: bool) -> tuple[Candidate, str]:
    """By prediction: the knee of the front (no budget), else the highest predicted top-1 within the budget."""
    if pareto_mode:
        k = knee_index(np.array([c.predicted_latency_ms for c in front]), np.array([c.predicted_top1 for c in front]))
        return front[k], "knee of the predicted Pareto front"
    top = space.canonical_genes(r.genes[:1])
    best = _candidates(space, top, r.scores[:1], {k: v[:1] for k, v in r.values.items()})[0]
    return best, "highest predicted top-1 within the budget"


def _rerank(
    run: _Run, r: EvolutionResult, front: list[Candidate], pareto_mode: bool, selected: Candidate, how: str
) -> tuple[Candidate, str]:
    """Evaluate the top ``rerank`` candidates for real and choose by measured top-1 (front points updated)."""
    o, space = run.opts, run.space
    if run.evaluator is None:
        run.evaluator = _evaluator_for(run.ckpt, run.header, run.req.dataset, o.calib_images, o.val_images)
        run.eval_meta = run.evaluator.data.meta
    pool = _rerank_pool(space, r, front, pareto_mode, o.rerank)
    for c in pool:
        c.measured_top1 = run.evaluator.top1(space.config_from_dict(c.config))
    measured = {json_key(c.config): c.measured_top1 for c in pool}
    for c in front:
        c.measured_top1 = measured.get(json_key(c.config), c.measured_top1)
    if pareto_mode:
        pts = sorted(pool, key=lambda c: c.predicted_latency_ms)
        k = knee_index(np.array([c.predicted_latency_ms for c in pts]), np.array([c.measured_top1 for c in pts]))
        return pts[k], f"knee of {len(pool)} front points by measured top-1 (--rerank {o.rerank})"
    best = max(pool, key=lambda c: (c.measured_top1, c.predicted_top1))
    return best, f"highest measured top-1 among the top {len(pool)} by predicted top-1 (--rerank {o.rerank})"


def _write(res: SearchResult, run: _Run, budgets: list[float | None], *, out: str | Path, command: str) -> None:
    """The run directory: manifest (seeds, the search's settings), result.json, subnet files, pareto.csv/png."""
    from compress.core.runs import RunDir
    from compress.search.result import write_run

    req, o = run.req, run.opts
    rd = RunDir(out, command=command, seeds={"search": req.seed, "predictor": req.predictor_seed})
    rd.add_input("supernet", run.ckpt)
    rd.set(
        "search",
        {
            "devices": list(req.devices),
            "budgets_ms": budgets,
            "algorithm": o.algorithm,
            "population": o.population,
            "generations": o.generations,
            "rerank": o.rerank,
            "refine": o.refine,
        },
    )
    write_run(res, rd)


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
    cs = _constraint_set(cost, lat, budget, max_params, max_macs, channel_multiple)
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
