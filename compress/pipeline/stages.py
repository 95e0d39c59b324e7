"""One small object per pipeline stage: (train) -> profile -> search -> prune -> (quantize) -> export -> bench -> check.

Each stage names the config it depends on (:meth:`Stage.config`), the external files it reads
(:meth:`Stage.inputs`, hashed) and the stages it needs; the runner turns those into the cache key
(:func:`compress.pipeline.cache.stage_key`). :meth:`Stage.run` works inside an empty (or, when
resuming, kept) directory and returns a JSON-able result whose file references are *relative* to
the stage directory (the directory is renamed when the stage commits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.core import hooks
from compress.core.errors import UsageError
from compress.core.progress import NullProgress, Prefixed, Progress
from compress.core.runs import sha256_file
from compress.pipeline.config import PipelineCfg


@dataclass
class Context:
    cfg: PipelineCfg
    run_dir: Path
    stage_dir: Callable[[str], Path]  # committed directory of a stage
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # committed stage records
    console: Any = None  # for stages whose library call still takes a console/bool (train, prune)
    report_dir: Path | None = None  # where this run's report set is being written (not yet published)
    progress: Progress = field(default_factory=NullProgress)  # lines and bars (the CLI renders them)

    def log(self, msg: str) -> None:
        self.progress.note(msg)

    def result(self, stage: str) -> dict[str, Any]:
        return self.records[stage]["result"]

    def path(self, stage: str, rel: str) -> Path:
        return self.stage_dir(stage) / rel


def _seam(stage: str, work: Path) -> None:
    """The test seam ``pipeline.stage`` (:mod:`compress.core.hooks`): the stage wrote part of its work."""
    hooks.fire("pipeline.stage", stage=stage, work=work)


def canonical_devices(cfg: PipelineCfg) -> list[dict[str, Any]]:
    """Devices with canonical profile names and their resolved runtime/precision."""
    from compress.hardware import get_profile

    out = []
    for d in cfg.devices:
        prof = get_profile(d.name)
        # `name@MODE` in the YAML keeps the mode in the name every stage passes on (default mode: the plain name)
        out.append(
            {
                "name": prof.table_device if "@" in d.name else prof.name,
                "power_mode": prof.power_mode,
                "table_dir": prof.table_device,
                "alias": d.name,
                "budget_ms": d.budget_ms,
                "runtime": prof.check_runtime(d.runtime),
                "precision": prof.check_precision(d.precision),
                "batch": d.batch,
                "profile": d.profile,
                "remote": d.remote,
                "kind": prof.kind,
                "detect": bool(getattr(prof, "detect", False)),
            }
        )
    names = [d["name"] for d in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise UsageError(
            f"devices: {', '.join(sorted(dup))} listed twice (aliases name the same device); list each once"
        )
    return out


def supernet_path(ctx: Context) -> Path:
    if "train" in ctx.records:
        return ctx.path("train", ctx.result("train")["supernet"])
    sn = ctx.cfg.supernet
    if sn in (None, "default"):
        from compress.supernet import default_checkpoint_path

        return Path(default_checkpoint_path())
    p = Path(sn).expanduser()
    if not p.is_file():
        raise UsageError(f"supernet: checkpoint not found: {p}; give a .safetensors path or `default`")
    return p.resolve()


def external_tables(cfg: PipelineCfg) -> list[Path]:
    """Table files under ``cfg.tables`` for the devices not profiled by this pipeline."""
    if not cfg.tables:
        return []
    root = Path(cfg.tables).expanduser()
    if not root.is_dir():
        raise UsageError(f"tables: directory not found: {root}; give the directory `compress profile --tables` wrote")
    out = []
    for d in canonical_devices(cfg):
        if not d["profile"]:
            out += sorted((root / d["table_dir"]).glob("*__*__b*__*.json"))  # tables are per power mode
    return out


def build_tables_dir(ctx: Context, work: Path) -> Path:
    """The run's own table directory: tables measured by the profile stage + copies of ``tables:``."""
    import shutil

    dst = work / "tables"
    if "profile" in ctx.records:
        shutil.copytree(ctx.path("profile", "tables"), dst, dirs_exist_ok=True)
    for f in external_tables(ctx.cfg):
        (dst / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst / f.parent.name / f.name)
    dst.mkdir(parents=True, exist_ok=True)
    return dst


class Stage:
    name = ""
    version = 1
    needs: tuple[str, ...] = ()

    def enabled(self, cfg: PipelineCfg) -> bool:
        return True

    def config(self, cfg: PipelineCfg) -> Any:
        return None

    def inputs(self, ctx: Context) -> dict[str, str]:
        return {}

    def run(self, ctx: Context, work: Path, resumed: bool) -> dict[str, Any]:
        raise NotImplementedError


class TrainStage(Stage):
    name = "train"

    def enabled(self, cfg: PipelineCfg) -> bool:
        return cfg.train is not None

    def config(self, cfg: PipelineCfg) -> Any:
        return {"train": cfg.train.model_dump(mode="json"), "data": cfg.data.model_dump(mode="json"), "seed": cfg.seed}

    def run(self, ctx: Context, work: Path, resumed: bool) -> dict[str, Any]:
        from compress.core.config import validate
        from compress.train import TrainConfig, train

        t = ctx.cfg.train
        tc = validate(
            TrainConfig,
            {
                **t.options,
                "family": t.family,
                "data": ctx.cfg.data.name,
                "out": work / "train",
                "recipe": t.recipe,
                "epochs": t.epochs,
                "seed": ctx.cfg.seed,
                "batch_size": t.batch_size,
                "image_size": ctx.cfg.data.image_size,
                "train_limit": t.train_limit or ctx.cfg.data.train_limit,
                "max_steps": t.max_steps,
                "space": t.space,
            },
            source="pipeline train",
        )
        _seam(self.name, work)
        res = train(tc, resume=resumed and (work / "train").exists(), progress=ctx.console is not None)
        return {
            "supernet": str(Path(res.supernet).resolve().relative_to(work.resolve())),
            "steps": res.steps,
            "epochs": res.epochs,
            "wall_s": res.wall_s,
            "eval": res.eval,
        }


class ProfileStage(Stage):
    name = "profile"
    needs = ("train",)

    def enabled(self, cfg: PipelineCfg) -> bool:
        return cfg.model is None and any(d.profile for d in cfg.devices)

    def config(self, cfg: PipelineCfg) -> Any:
        devs = [
            d.model_dump(mode="json", include={"name", "runtime", "precision", "batch", "remote"})
            for d in cfg.devices
            if d.profile
        ]
        return {
            "devices": devs,
            "profiling": cfg.profiling.model_dump(mode="json"),
            "seed": cfg.seed,
            "merged": cfg.prune.method == "updp",
        }

    def inputs(self, ctx: Context) -> dict[str, str]:
        return {"supernet": sha256_file(supernet_path(ctx))}

    def run(self, ctx: Context, work: Path, resumed: bool) -> dict[str, Any]:
        from compress.latency.profile import profile_table
        from compress.supernet import SearchSpace
        from compress.supernet.checkpoint import read_checkpoint_header

        ckpt = supernet_path(ctx)
        space = SearchSpace.from_dict(read_checkpoint_header(ckpt)["space"])
        p = ctx.cfg.profiling
        out = {"tables": "tables", "devices": {}}
        for d in canonical_devices(ctx.cfg):
            if not d["profile"]:
                continue
            ctx.log(
                f"  measuring the latency table of {d['name']} ({d['runtime']}, {d['precision']}, batch {d['batch']})"
                + (f" on {d['remote']}" if d["remote"] else " on this machine")
            )
            res = profile_table(
                device=d["name"],
                runtime=d["runtime"],
                precision=d["precision"],
                supernet=ckpt,
                batch=d["batch"],
                resolutions=p.resolutions,
                remote=d["remote"],
                tables=work / "tables",
                # UPDP prices another device's blocks and merged forms from this table
                # (on this machine it times them on the spot)
                merged=ctx.cfg.prune.method == "updp" and not d["detect"],
                threads=p.threads,
                iterations=p.iterations,
                warmup=p.warmup,
                calibrate=p.calibrate,
                seed=ctx.cfg.seed,
                progress=Prefixed(ctx.progress, f"profile {d['name']}"),
            )
            _seam(self.name, work)
            from dataclasses import asdict

            r = asdict(res)
            r["path"] = str(Path(res.path).resolve().relative_to(work.resolve()))
            out["devices"][d["name"]] = r
        out["space_hash"] = space.hash()
        return out


class SearchStage(Stage):
    name = "search"
    needs = ("train", "profile")

    def enabled(self, cfg: PipelineCfg) -> bool:
        return cfg.model is None

    def config(self, cfg: PipelineCfg) -> Any:
        devs = [d.model_dump(mode="json", exclude={"remote"}) for d in cfg.devices]
        return {
            "devices": devs,
            "search": cfg.search.model_dump(mode="json"),
            "seed": cfg.seed,
            "dataset": cfg.data.name,
        }

    def inputs(self, ctx: Context) -> dict[str, str]:
        return {
            "supernet": sha256_file(supernet_path(ctx)),
            **{f"table:{f.parent.name}/{f.name}": sha256_file(f) for f in external_tables(ctx.cfg)},
        }

    def run(self, ctx: Context, work: Path, resumed: bool) -> dict[str, Any]:
        from compress.core.runs import atomic_write_json
        from compress.latency.predict import LatencyModel
        from compress.search.api import search

        s, ckpt, tables = ctx.cfg.search, supernet_path(ctx), build_tables_dir(ctx, work)
        out: dict[str, Any] = {"devices": {}}
        for d in canonical_devices(ctx.cfg):
            budget = d["budget_ms"]
            ctx.log(
                f"  searching for {d['name']} ({d['runtime']}, {d['precision']}): "
                + (f"budget {budget:g} ms" if budget else "Pareto front, knee point")
            )
            res = search(
                devices=[d["name"]],
                latency_ms=budget,
                supernet=ckpt,
                runtime=d["runtime"],
                precision=d["precision"],
                batch=d["batch"],
                seed=ctx.cfg.seed,
                predictor_seed=ctx.cfg.seed,
                dataset=ctx.cfg.data.name,
                tables=tables,
                options=s,
                out=work / d["name"],
                progress=ctx.progress,
                command="compress pipeline (search)",
            )
            dev = res.devices[0]
            lm = LatencyModel.load(
                device=d["name"],
                runtime=dev.runtime,
                precision=dev.precision,
                batch=d["batch"],
                space=ckpt,
                tables=tables,
                warn=False,
            )
            from compress.supernet import SearchSpace
            from compress.supernet.checkpoint import read_checkpoint_header

            space = SearchSpace.from_dict(read_checkpoint_header(ckpt)["space"])
            cfg = space.config_from_dict(dev.selected.config)
            atomic_write_json(
                work / d["name"] / "breakdown.json",
                {
                    "device": d["name"],
                    "runtime": dev.runtime,
                    "latency_source": lm.source,
                    "total_ms": lm.predict(cfg),
                    "layers": lm.breakdown(cfg),
                },
            )
            out["devices"][d["name"]] = {
                "dir": d["name"],
                "subnet": f"{d['name']}/subnet.json",
                "breakdown": f"{d['name']}/breakdown.json",
                "runtime": dev.runtime,
                "precision": dev.precision,
                "latency_source": dev.latency_source,
                "budget_ms": budget,
                "selected": dev.selected.to_dict(),
                "selection": dev.selection,
                "pareto": [c.to_dict() for c in dev.pareto],
            }
            _seam(self.name, work)
        out["predictor"] = res.predictor
        out["supernet"] = res.supernet
        return out


def prune_device(ctx: Context) -> str:
    devs = canonical_devices(ctx.cfg)
    if ctx.cfg.prune.device:
        from compress.hardware import get_profile

        pp = get_profile(ctx.cfg.prune.device)
        name = pp.table_device if "@" in ctx.cfg.prune.device else pp.name
        if name not in [d["name"] for d in devs]:
            raise UsageError(
                f"prune.device '{ctx.cfg.prune.device}' is not one of the pipeline's devices "
                f"({', '.join(d['alias'] for d in devs)})"
            )
        return name
    local = [d["name"] for d in devs if d["detect"]]
    return local[0] if local else devs[0]["name"]


class PruneStage(Stage):
    name = "prune"
    needs = ("train", "profile", "search")

    def config(self, cfg: PipelineCfg) -> Any:
        return {
            "prune": cfg.prune.model_dump(mode="json"),
            "data": cfg.data.model_dump(mode="json"),
            "seed": cfg.seed,
            "model": cfg.model.model_dump(mode="json") if cfg.model else None,
        }

    def inputs(self, ctx: Context) -> dict[str, str]:
        m = ctx.cfg.model
        out: dict[str, str] = {}
        if m is not None and m.weights and Path(m.weights).is_file():
            out["weights"] = sha256_file(m.weights)
        if m is not None and m.file is not None:  # your model file: an edit to it redoes the stage
            from compress.models.pyfile import split_ref

            path, _factory = split_ref(m.file)
            if path.is_file():
                out["model_file"] = sha256_file(path)
        return out

    def source(self, ctx: Context) -> tuple[str, dict[str, Any]]:
        """The model reference pruning starts from (the searched subnet, or the model you gave)."""
        if ctx.cfg.model is not None:
            return ctx.cfg.model.ref, {"weights": ctx.cfg.model.weights}
        dev = prune_device(ctx)
        return str(ctx.path("search", ctx.result("search")["devices"][dev]["subnet"]).resolve()), {}

    def run(self, ctx: Context, work: Path, resumed: bool) -> dict[str, Any]:
        p = ctx.cfg.prune
        ref, extra = self.source(ctx)
        device = prune_device(ctx) if ctx.cfg.model is None else (p.device or "local-cpu")
        if p.method == "none":  # no pruning: still measure the model's top-1 so accuracy gates work
            top1 = _top1(ref, ctx.cfg.data.name, ctx.cfg.seed, extra.get("weights"))
            return {
                "method": "none",
                "model": ref,
                "source": ref,
                "device": device,
                "top1_before": top1,
                "top1_after": top1,
            }
        from compress.prune import prune

        def say(msg: str) -> None:
            ctx.log(f"  {p.method}: {msg}")

        opts: dict[str, Any] = {
            "model": ref,
            "data": ctx.cfg.data.name,
            "epochs": p.epochs,
            "seed": ctx.cfg.seed,
            "out": work,
            "progress": say,
        }
        if p.method == "updp":
            if p.blocks is None and p.latency_ms is None:
                opts["blocks"] = 1
            opts.update(
                blocks=p.blocks if p.blocks is not None else opts.get("blocks"),
                latency_ms=p.latency_ms,
                device=device,
                train_limit=p.train_limit or ctx.cfg.data.train_limit,
                max_steps=p.max_steps,
                timing_iterations=p.timing_iterations,
                weights=extra.get("weights"),
            )
            if "search" in ctx.records and ctx.path("search", "tables").is_dir():
                opts["tables"] = ctx.path("search", "tables")  # another device: its table, as search used it
            if p.latency == "macs-estimate":
                from compress.prune.updp.latency import MacsBlockLatency

                opts["latency"] = MacsBlockLatency()
        else:  # ftwt (logs to stderr itself; reports top-1 as a fraction)
            opts.update(mass=p.mass, progress=ctx.console is not None)  # None: FTWT's DEFAULT_MASS
        _seam(self.name, work)
        res = prune(method=p.method, **opts)
        if p.method == "ftwt":
            res = {**res, **{k: 100.0 * res[k] for k in ("top1_before", "top1_after") if res.get(k) is not None}}
        model_dir = work / "model"
        if not (model_dir / "model.json").is_file():
            raise UsageError(f"prune method {p.method} wrote no loadable model directory in {work}; use method: none")
        return {
            "method": p.method,
            "model": "model",
            "source": ref,
            "device": device,
            "top1_before": res.get("top1_before"),
            "top1_after": res.get("top1_after"),
            "pruned_blocks": res.get("pruned_blocks"),
            "predicted_latency_ms_before": res.get("predicted_latency_ms_before"),
            "predicted_latency_ms_after": res.get("predicted_latency_ms_after"),
            "measured_latency": res.get("measured_latency"),
            "latency_source": res.get("latency_source"),
            "merge_check": res.get("merge_check"),
            "params_before": res.get("params_before"),
            "params_after": res.get("params_after"),
            "macs_before": res.get("macs_before"),
            "macs_after": res.get("macs_after"),
            "seconds": res.get("seconds"),
        }


def _top1(ref: str, data: str, seed: int, weights: str | None) -> float:
    """Top-1 (%) of a model reference on the dataset's test split (the split UPDP reports)."""
    from compress.data import dataset_info, load_dataset
    from compress.models.dataset import load_for_dataset
    from compress.nn.evaluate import top1

    lm = load_for_dataset(ref, dataset_info(data), weights=weights)
    c, h, _w = lm.input_shape
    test = load_dataset(data, image_size=h, channels=c, seed=seed).test
    return 100.0 * top1(lm.module, test.images, test.labels, batch_size=256)


def pruned_model_ref(ctx: Context) -> str:
    r = ctx.result("prune")
    return r["model"] if r["method"] == "none" else str(ctx.path("prune", r["model"]).resolve())


class ExportStage(Stage):
    name = "export"
    needs = ("train", "profile", "search", "prune")

    def config(self, cfg: PipelineCfg) -> Any:
        return {"export": cfg.export.model_dump(mode="json"), "data": cfg.data.name, "seed": cfg.seed}

    def run(self, ctx: Context, work: Path, resumed: bool) -> dict[str, Any]:
        from compress.export.api import export_model

        e = ctx.cfg.export
        ctx.log(f"  exporting the final model to {', '.join(e.formats)} ({e.precision}) with parity checks")
        res = export_model(
            pruned_model_ref(ctx),
            out=work / "final",
            formats=e.formats,
            precision=e.precision,
            batch=e.batch,
            samples=e.samples,
            data=ctx.cfg.data.name,
            seed=ctx.cfg.seed,
            command="compress pipeline (export)",
        )
        _seam(self.name, work)
        out: dict[str, Any] = {"final": "final", "passed": res.passed, "formats": [], "baseline": None}
        for f in res.formats:
            out["formats"].append(
                {
                    k: f.get(k)
                    for k in (
                        "format",
                        "kind",
                        "precision",
                        "max_abs_err",
                        "max_rel_err",
                        "top1_agreement",
                        "passed",
                        "verified",
                        "notes",
                    )
                }
                | {"path": str(Path(f["path"]).resolve().relative_to(work.resolve()))}
            )
        pr = ctx.result("prune")
        if pr["method"] != "none":  # the unpruned choice too, so bench measures what search predicted
            ctx.log("  exporting the unpruned searched subnet (ONNX) for predicted-vs-measured latency")
            base = export_model(
                pr["source"],
                out=work / "searched",
                formats=["onnx"],
                precision="fp32",
                batch=e.batch,
                parity=False,
                preflight=False,
                seed=ctx.cfg.seed,
                command="compress pipeline (export)",
            )
            out["baseline"] = str(Path(base.formats[0]["path"]).resolve().relative_to(work.resolve()))
        return out


def _runtime_kinds(runtime: str) -> tuple[str, ...]:
    """The artefact kinds ``runtime`` runs, in its order of preference (declared by its runner module)."""
    from compress.export.runtimes import get_runner

    return get_runner(runtime).reads


def bench_items(ctx: Context, runtimes: list[str]) -> list[tuple[str, str, str]]:
    """``(label, path, runtime)`` of the quantized models the bench stage times beside the fp32 ones:
    ``final-<prec>:<rt>`` per quantized runtime it benchmarks, ``searched-<prec>:<rt>`` for the
    quantized searched subnet."""
    if "quantize" not in ctx.records:
        return []
    r = ctx.result("quantize")
    prec = r["precision"]
    items = [
        (f"final-{prec}:{rt}", str(ctx.path("quantize", q["path"])), rt)
        for rt, q in r["runtimes"].items()
        if rt in runtimes
    ]
    s = r.get("searched")
    if s and s["runtime"] in runtimes:
        items.append((f"searched-{prec}:{s['runtime']}", str(ctx.path("quantize", s["path"])), s["runtime"]))
    return items


class BenchStage(Stage):
    name = "bench"
    needs = ("train", "profile", "search", "prune", "quantize", "export")

    def config(self, cfg: PipelineCfg) -> Any:
        return {"bench": cfg.bench.model_dump(mode="json"), "seed": cfg.seed}

    def run(self, ctx: Context, work: Path, resumed: bool) -> dict[str, Any]:
        from compress.bench.api import bench
        from compress.hardware import get_profile

        b = ctx.cfg.bench
        prof = get_profile(b.device)
        ex = ctx.result("export")
        items: list[tuple[str, str, str]] = []  # (label, path, runtime)
        skipped = []
        for rt in b.runtimes:
            prof.check_runtime(rt)
            for kind in _runtime_kinds(rt):
                f = next((f for f in ex["formats"] if f["kind"] == kind), None)
                if f is not None:
                    items.append((f"final:{rt}", str(ctx.path("export", f["path"])), rt))
                    break
            else:
                skipped.append(
                    f"{rt}: no exported artefact it runs (formats: {', '.join(f['kind'] for f in ex['formats'])})"
                )
        if not items:
            raise UsageError(f"bench: nothing to time on {prof.name}: " + "; ".join(skipped))
        if ex.get("baseline"):
            items.append(("searched:" + b.runtimes[0], str(ctx.path("export", ex["baseline"])), items[0][2]))
        items += bench_items(ctx, list(b.runtimes))  # quantized models, interleaved with the fp32 ones
        results = {}
        ctx.log(f"  benchmarking {len(items)} artefacts on {prof.name}" + (f" via {b.remote}" if b.remote else ""))
        by_rt: dict[str, list[tuple[str, str]]] = {}  # one bench call per runtime (interleaved within it)
        for label, path, rt in items:
            by_rt.setdefault(rt, []).append((label, path))
        for rt, its in by_rt.items():
            res = bench(
                [p for _, p in its],
                device=prof.table_device,
                runtime=rt,
                batch=1,
                threads=b.threads,
                warmup=b.warmup,
                iterations=b.iterations,
                rounds=b.rounds,
                remote=b.remote,
                out=work / rt,
                command="compress pipeline (bench)",
                progress=Prefixed(ctx.progress, f"bench {rt}"),
            )
            for (label, _), item in zip(its, res.items):
                results[label] = {
                    "runtime": item.runtime,
                    "median_ms": item.median_ms,
                    "std_ms": item.std_ms,
                    "p90_ms": item.p90_ms,
                    "min_ms": item.min_ms,
                    "iterations": item.iterations,
                    "cv": item.cv,
                    "noisy": item.noisy,
                    "runner": item.runner,
                    "runtime_version": item.runtime_version,
                    "file": item.file,
                    "drift_controlled": res.drift_controlled,
                    "drift_status": res.drift.get("status"),
                }
            _seam(self.name, work)
        return {"device": prof.name, "remote": b.remote, "items": results, "skipped": skipped, "primary": items[0][0]}


class CheckStage(Stage):
    name = "check"
    needs = ("train", "profile", "search", "prune", "quantize", "export", "bench")

    def config(self, cfg: PipelineCfg) -> Any:
        return {"gates": cfg.gates.model_dump(mode="json")}

    def run(self, ctx: Context, work: Path, resumed: bool) -> dict[str, Any]:
        from compress.pipeline.check import check

        g = ctx.cfg.gates
        if not (
            g.max_latency_ms
            or g.min_top1 is not None
            or g.max_top1_drop is not None
            or g.max_parity_err is not None
            or g.max_quant_drop is not None
        ):
            return {"passed": None, "gates": [], "note": "no gates in the pipeline YAML"}
        res = check(ctx.report_dir or ctx.run_dir, junit=work / "junit.xml")
        return {**res, "run_dir": str(ctx.run_dir), "junit": "junit.xml"}
