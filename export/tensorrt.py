"""TensorRT: engines are specific to the GPU and the TensorRT version, so they are built ON THE
TARGET. Every export writes a device build bundle (``tensorrt/``):

  model.onnx            the fp32 ONNX (sha256 pinned in bundle.json)
  build_engine.py       TensorRT Python API build (parser, fp16/int8 flags, optimisation profile for
                        a dynamic batch, workspace limit, timing cache, DLA) + parity check
  build_engine.sh       the equivalent ``trtexec`` line
  bundle.json           the build settings, parity thresholds, input name/shape
  parity_inputs.npy / parity_reference.npy   inputs and PyTorch outputs for the on-device check
  calib.npy             int8 only: calibration images (implicit quantization, TensorRT's calibrator)
  model.qdq.onnx        int8 from ``compress quantize``: the Q/DQ model (explicit quantization); when
                        present, build_engine.py builds THIS one (``--int8-mode calibration`` builds
                        model.onnx with calib.npy instead)
  README.md

Where TensorRT and a CUDA GPU are present the bundle is built here (in-process, the same
``build_engine.py`` code) and verified with the shared TensorRT runner; with ``remote`` it is
built on ``user@host`` over SSH and the engine and its ``build.json`` fetched back. Otherwise
only the bundle exists, and the result says so: an engine is never reported that was not built.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import Failure
from compress.core.runs import atomic_path, atomic_write_json, atomic_write_text, sha256_file

TEMPLATE = Path(__file__).with_name("bundle") / "build_engine.py"


def tensorrt_available() -> bool:
    from compress.export.runtimes import get_runner

    return get_runner("tensorrt").available()


def trtexec_command(cfg: dict[str, Any]) -> list[str]:
    """The ``trtexec`` argument list equivalent to ``build_engine.py`` with ``cfg``."""
    explicit = cfg["precision"] == "int8" and cfg.get("int8_mode") == "explicit"
    argv = [
        "trtexec",
        f"--onnx={cfg['qdq_onnx'] if explicit else cfg['onnx']}",
        f"--saveEngine={cfg['engine']}",
        f"--memPoolSize=workspace:{int(cfg['workspace_mb'])}M",
        f"--timingCacheFile={cfg['timing_cache']}",
    ]
    if cfg["precision"] in ("fp16", "int8"):
        argv.append("--fp16")
    if cfg["precision"] == "bf16":
        argv.append("--bf16")
    if cfg["precision"] == "int8":
        argv += ["--int8"] if explicit else ["--int8", "--calib=calib.cache"]
    if cfg["dynamic"]:
        dims = lambda b: "x".join(str(d) for d in [b, *cfg["input_shape"][1:]])  # noqa: E731
        name = cfg["input_name"]
        argv += [
            f"--minShapes={name}:{dims(cfg['min_batch'])}",
            f"--optShapes={name}:{dims(cfg['opt_batch'])}",
            f"--maxShapes={name}:{dims(cfg['max_batch'])}",
        ]
    if cfg.get("dla_core") is not None:
        argv.append(f"--useDLACore={int(cfg['dla_core'])}")
        if cfg.get("dla_gpu_fallback"):
            argv.append("--allowGPUFallback")
        argv.append("--verbose")  # the build log then lists the layers running on the DLA and on the GPU
    return argv


def parse_trtexec_dla(log: str) -> dict[str, Any] | None:
    """TensorRT's layer report from a verbose trtexec build log (the ``Layers Running on DLA/GPU``
    sections list ``[DlaLayer] name`` / ``[GpuLayer] name``): ``{"dla": [...], "gpu": [...]}``, or None
    when the log holds no such report.

    >>> parse_trtexec_dla("[I] [TRT] ---------- Layers Running on DLA ----------\\n[I] [TRT] [DlaLayer] {ForeignNode[conv1...fc]}\\n"
    ...                   "[I] [TRT] ---------- Layers Running on GPU ----------\\n[I] [TRT] [GpuLayer] SOFTMAX: prob")["gpu"]
    ['SOFTMAX: prob']
    """
    dla: list[str] = []
    gpu: list[str] = []
    seen = False
    for line in log.splitlines():
        if re.search(r"Layers Running on (DLA|GPU)", line):
            seen = True
            continue
        m = re.search(r"\[(DlaLayer|GpuLayer)\]\s*(.+?)\s*$", line)
        if m:
            seen = True
            (dla if m.group(1) == "DlaLayer" else gpu).append(m.group(2))
    return {"dla": dla, "gpu": gpu, "source": "trtexec --verbose build log"} if seen else None


def _script(cfg: dict[str, Any]) -> str:
    line = " ".join(shlex.quote(a) for a in trtexec_command(cfg))
    int8 = ""
    if cfg["precision"] == "int8" and cfg.get("int8_mode") == "explicit":
        int8 = "# int8, explicit quantization: the Q/DQ nodes of model.qdq.onnx carry the scales (no calibration)\n"
    elif cfg["precision"] == "int8":
        int8 = (
            "# int8: trtexec reads the calibration cache that build_engine.py writes (calib.cache);\n"
            "# run `python3 build_engine.py` once first, or trtexec would use placeholder scales.\n"
            'if [ ! -f calib.cache ]; then echo "error: calib.cache missing; run python3 build_engine.py" >&2; exit 1; fi\n'
        )
    return (
        "#!/usr/bin/env bash\n"
        "# Equivalent of build_engine.py with trtexec (no parity check). Run it ON the target device:\n"
        "# engines only load on the GPU model and TensorRT version that built them.\n"
        "set -euo pipefail\n"
        'cd "$(dirname "$0")"\n'
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"\n'
        'if [ ! -x "$TRTEXEC" ]; then echo "error: trtexec not found (JetPack: /usr/src/tensorrt/bin/trtexec)" >&2; exit 2; fi\n'
        f"{int8}"
        + (
            f'"$TRTEXEC" {line.split(" ", 1)[1]} 2>&1 | tee trtexec.log\n'
            if cfg.get("dla_core") is not None
            else f'"$TRTEXEC" {line.split(" ", 1)[1]}\n'
        )
    )


def _dla_section(cfg: dict[str, Any], build: dict[str, Any] | None) -> str:
    """The README's DLA section: what was asked for, and the layers that fall back to the GPU once
    TensorRT has built the engine (its own report); before that, nothing is claimed."""
    if cfg.get("dla_core") is None:
        return ""
    core, fb = int(cfg["dla_core"]), bool(cfg.get("dla_gpu_fallback"))
    head = (
        f"\n## DLA\n\nRequested: DLA core {core} (`--useDLACore={core}`"
        + (", `--allowGPUFallback`" if fb else ", no GPU fallback: a layer the DLA cannot run fails the build")
        + ").\n"
    )
    rep = (build or {}).get("build", {}).get("dla") if build else None
    trt_log = (build or {}).get("trtexec_layers") if build else None
    if not build or not build.get("build") and not trt_log:
        return head + (
            "\n**Not built yet**: this bundle only asks for the DLA. Which layers run there and which fall "
            "back to the GPU is TensorRT's decision at build time; `build_engine.py` records it in "
            "`build.json` (`build.dla`), `build_engine.sh` in `trtexec.log`, and `compress export` rewrites "
            "this section after a local or `--remote` build.\n"
        )
    if rep:
        lines = [
            f"\nBuilt on {build.get('gpu', build.get('remote', 'the target'))} with TensorRT {build.get('tensorrt', '?')}: "
            f"{rep['on_dla']} of {rep['layers']} layers on DLA core {rep['dla_core']} ({rep['source']})."
        ]
        if rep["gpu_fallback"]:
            lines.append("\nLayers that fall back to the GPU:\n")
            lines += [f"- `{x['name']}` ({x['type']})" for x in rep["gpu_fallback"]]
        else:
            lines.append("\nNo layer falls back to the GPU.")
        sub = (rep.get("engine_layers") or {}).get("dla_subgraphs")
        if sub is not None:
            lines.append(f"\nThe engine runs {len(sub)} DLA subgraph(s) (engine inspector).")
        return head + "\n".join(lines) + "\n"
    if trt_log:
        lines = [
            f"\nBuilt with trtexec on {build.get('remote', 'the target')}: {len(trt_log['dla'])} DLA layer group(s) "
            f"({trt_log['source']})."
        ]
        lines.append("\nLayers that fall back to the GPU:\n" if trt_log["gpu"] else "\nNo layer falls back to the GPU.")
        lines += [f"- `{x}`" for x in trt_log["gpu"]]
        return head + "\n".join(lines) + "\n"
    return head + "\nBuilt, but the build left no DLA layer report (see build.json).\n"


def _readme(cfg: dict[str, Any], build: dict[str, Any] | None = None) -> str:
    shapes = (
        f"dynamic batch {cfg['min_batch']}..{cfg['max_batch']} (optimised for {cfg['opt_batch']})"
        if cfg["dynamic"]
        else f"static shape {'x'.join(map(str, cfg['input_shape']))}"
    )
    dla = (
        f"\n- DLA core {cfg['dla_core']}{' with GPU fallback' if cfg.get('dla_gpu_fallback') else ''}"
        if cfg.get("dla_core") is not None
        else ""
    )
    int8 = ""
    if cfg["precision"] == "int8" and cfg.get("int8_mode") == "explicit":
        int8 = (
            f"\n- int8 path: **explicit quantization** from `{cfg['qdq_onnx']}` (Q/DQ nodes placed and calibrated by "
            "`compress quantize`, symmetric int8, per-channel weights); this is what build_engine.py and "
            "build_engine.sh build. The calibration-cache path (model.onnx + calib.npy through TensorRT's "
            "entropy calibrator) is also in the bundle: `python3 build_engine.py --int8-mode calibration`"
        )
    elif cfg["precision"] == "int8":
        int8 = "\n- int8 path: **calibration cache** (model.onnx + calib.npy through TensorRT's entropy calibrator)"
    return f"""# TensorRT build bundle

Built by `compress export` on a machine without TensorRT/CUDA. TensorRT engines are specific to the
GPU and the TensorRT version, so build the engine **on the target device**:

```bash
python3 build_engine.py        # TensorRT Python API: builds {cfg["engine"]}, checks it against PyTorch, writes build.json
bash build_engine.sh           # or the equivalent trtexec line (no parity check)
```

- input `{cfg["input_name"]}`: {shapes}
- precision {cfg["precision"]}, workspace {cfg["workspace_mb"]} MiB, timing cache `{cfg["timing_cache"]}`{dla}{int8}
- model.onnx sha256 `{cfg["onnx_sha256"]}` (build_engine.py refuses a modified file)
- parity: {cfg["parity_source"] or "none"}; passes when max_rel_err <= {cfg["threshold"]["max_rel_err"]:g} and top-1 agreement >= {cfg["threshold"]["min_top1"]:g}

Exit codes of build_engine.py: 0 built and parity passed, 1 build failed, 2 TensorRT/CUDA missing, 3 parity failed.
Needs: TensorRT's Python package (JetPack's `python3-libnvinfer`, or `pip install tensorrt` on x86), numpy,
and torch with CUDA or `cuda-python` for GPU buffers. `compress export --remote user@host` runs this for you.
{_dla_section(cfg, build)}"""


# what a bundle directory may hold: the bundle, and what building it adds
BUNDLE_FILES = (
    "model.onnx",
    "model.qdq.onnx",
    "parity_inputs.npy",
    "parity_reference.npy",
    "calib.npy",
    "build_engine.py",
    "build_engine.sh",
    "bundle.json",
    "README.md",
    "model.engine",
    "build.json",
    "timing.cache",
    "calib.cache",
)


def write_bundle(
    onnx_path: str | Path,
    out_dir: str | Path,
    *,
    precision: str,
    input_shape: tuple[int, ...],
    dynamic: bool,
    max_batch: int = 32,
    workspace_mb: int = 2048,
    dla_core: int | None = None,
    dla_gpu_fallback: bool = False,
    parity_inputs: np.ndarray | None = None,
    parity_reference: np.ndarray | None = None,
    parity_source: str = "",
    calib_inputs: np.ndarray | None = None,
    input_name: str = "input",
    qdq_onnx: str | Path | None = None,
) -> dict[str, Any]:
    """Write the device build bundle; returns ``{"dir", "files", "config"}``.

    ``qdq_onnx`` (int8 only): a Q/DQ ONNX (``compress quantize --runtime tensorrt``) shipped as
    ``model.qdq.onnx`` and built by default (explicit quantization); the calibration-cache path
    (``calib.npy``) stays in the bundle when ``calib_inputs`` are given."""
    from compress.core.errors import UsageError
    from compress.core.runs import atomic_dir, is_temp_name
    from compress.export.parity import THRESHOLDS

    final = Path(out_dir)
    if final.is_dir():  # the bundle directory is replaced as a whole: never take the user's files with it
        other = sorted(p.name for p in final.iterdir() if p.name not in BUNDLE_FILES and not is_temp_name(p.name))
        if other:
            raise UsageError(
                f"{final} holds other files ({', '.join(other[:3])}); give the TensorRT bundle its own directory"
            )
    # every file is written into a temp directory beside the bundle, which then replaces it as a unit
    # (an engine built from the old bundle goes with it; the GPU's timing cache is kept)
    with atomic_dir(final) as out:
        files: list[Path] = []
        onnx_dst = out / "model.onnx"
        with atomic_path(onnx_dst) as tmp:
            shutil.copyfile(onnx_path, tmp)
        files.append(onnx_dst)
        t = THRESHOLDS[precision]
        cfg: dict[str, Any] = {
            "schema": 1,
            "onnx": "model.onnx",
            "onnx_sha256": sha256_file(onnx_dst),
            "engine": "model.engine",
            "precision": precision,
            "input_name": input_name,
            "input_shape": list(input_shape),
            "dynamic": dynamic,
            "min_batch": 1,
            "opt_batch": 1 if dynamic else int(input_shape[0]),
            "max_batch": int(max_batch) if dynamic else int(input_shape[0]),
            "workspace_mb": int(workspace_mb),
            "timing_cache": "timing.cache",
            "dla_core": dla_core,
            "dla_gpu_fallback": bool(dla_gpu_fallback),
            "parity_inputs": None,
            "parity_reference": None,
            "parity_source": parity_source,
            "threshold": {"max_rel_err": t.max_rel_err, "min_top1": t.min_top1},
        }
        if parity_inputs is not None and parity_reference is not None:
            for name, arr in (("parity_inputs.npy", parity_inputs), ("parity_reference.npy", parity_reference)):
                with atomic_path(out / name) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, np.ascontiguousarray(arr, dtype=np.float32))
                files.append(out / name)
            cfg["parity_inputs"], cfg["parity_reference"] = "parity_inputs.npy", "parity_reference.npy"
        if precision == "int8" and (calib_inputs is not None or qdq_onnx is None):
            if calib_inputs is None:
                raise Failure("int8 needs calibration images: pass --data (or use a model that records its dataset)")
            with atomic_path(out / "calib.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(calib_inputs, dtype=np.float32))
            files.append(out / "calib.npy")
            cfg["calib"], cfg["calib_batch"] = "calib.npy", 8
        if qdq_onnx is not None:
            if precision != "int8":
                raise Failure("a Q/DQ ONNX is an int8 model: write it into an int8 bundle")
            with atomic_path(out / "model.qdq.onnx") as tmp:
                shutil.copyfile(qdq_onnx, tmp)
            files.append(out / "model.qdq.onnx")
            cfg["qdq_onnx"], cfg["qdq_onnx_sha256"] = "model.qdq.onnx", sha256_file(out / "model.qdq.onnx")
        cfg["int8_mode"] = ("explicit" if qdq_onnx is not None else "calibration") if precision == "int8" else None
        with atomic_path(out / "build_engine.py") as tmp:
            shutil.copyfile(TEMPLATE, tmp)
        files.append(out / "build_engine.py")
        files.append(atomic_write_text(out / "build_engine.sh", _script(cfg)))
        (out / "build_engine.sh").chmod(0o755)
        files.append(atomic_write_json(out / "bundle.json", cfg))
        files.append(atomic_write_text(out / "README.md", _readme(cfg)))
        if (final / "timing.cache").is_file():
            shutil.copy2(final / "timing.cache", out / "timing.cache")
    files = [final / p.name for p in files]
    return {"dir": final, "files": files, "config": cfg}


def _load_template(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("compress_trt_build_engine", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def build_local(bundle_dir: Path) -> dict[str, Any]:
    """Build the bundle's engine here with its own build_engine.py (parity is checked by the caller)."""
    mod = _load_template(bundle_dir / "build_engine.py")
    code = mod.main(["--config", str(bundle_dir / "bundle.json"), "--no-verify"])
    record = json.loads((bundle_dir / "build.json").read_text()) if (bundle_dir / "build.json").is_file() else {}
    if code != 0 or not (bundle_dir / "model.engine").is_file():
        raise Failure(f"TensorRT engine build failed: {record.get('error', f'exit code {code}')}")
    return record


def build_remote(bundle_dir: Path, files: list[Path], remote: str, *, timeout: float = 3600.0) -> dict[str, Any]:
    """Copy the bundle to ``remote``, build there (Python API if TensorRT's Python package is
    installed, else trtexec), fetch ``model.engine`` + ``build.json`` back, remove the remote dir."""
    from compress.remote import parse_remote
    from compress.remote.ssh import env_ssh_config

    host = parse_remote(remote, ssh_config=env_ssh_config())
    host.check()
    with host.tempdir() as rdir:
        host.put({p.name: p for p in files}, rdir)
        has_py = host.run([host.python, "-c", "import tensorrt"], timeout=120, check=False).returncode == 0
        argv = [host.python, f"{rdir}/build_engine.py"] if has_py else ["bash", f"{rdir}/build_engine.sh"]
        res = host.run(argv, timeout=timeout, check=False)
        log = res.stderr.decode(errors="replace")
        record: dict[str, Any] = {
            "remote": host.target,
            "builder": "build_engine.py" if has_py else "trtexec",
            "exit_code": res.returncode,
            "log_tail": log[-2000:],
        }
        if host.exists(f"{rdir}/build.json"):
            record.update(json.loads(host.read(f"{rdir}/build.json").decode()))
            atomic_write_json(bundle_dir / "build.json", record)
        if not has_py and host.exists(f"{rdir}/trtexec.log"):
            rep = parse_trtexec_dla(host.read(f"{rdir}/trtexec.log").decode(errors="replace"))
            if rep is not None:
                record["trtexec_layers"] = rep
        if host.exists(f"{rdir}/model.engine") and res.returncode in (0, 3):
            host.get(f"{rdir}/model.engine", bundle_dir / "model.engine")
            if host.exists(f"{rdir}/timing.cache"):
                host.get(f"{rdir}/timing.cache", bundle_dir / "timing.cache")
    if not (bundle_dir / "model.engine").is_file():
        last = [ln for ln in log.strip().splitlines() if ln.strip()]
        raise Failure(
            f"the TensorRT build on {host.target} failed (exit {res.returncode}): {last[-1] if last else 'no output'}"
        )
    if not has_py:
        record["parity"] = None
    atomic_write_json(bundle_dir / "build.json", record)
    return record


def to_tensorrt(
    onnx_path: str | Path,
    out_dir: str | Path,
    *,
    precision: str = "fp32",
    input_shape: tuple[int, ...],
    dynamic: bool = False,
    remote: str | None = None,
    **bundle_opts: Any,
) -> dict[str, Any]:
    """Write the bundle and build the engine here or on ``remote`` when possible.

    Returns ``{"bundle": dir, "files": [...], "engine": path | None, "built": "local"|"remote"|None,
    "build": build.json record, "config": bundle.json}``.
    """
    b = write_bundle(onnx_path, out_dir, precision=precision, input_shape=input_shape, dynamic=dynamic, **bundle_opts)
    out = {
        "bundle": b["dir"],
        "files": list(b["files"]),
        "engine": None,
        "built": None,
        "build": {},
        "config": b["config"],
    }
    if remote:
        out["build"] = build_remote(b["dir"], b["files"], remote)
        out["built"] = "remote"
    elif tensorrt_available():
        out["build"] = build_local(b["dir"])
        out["built"] = "local"
    if out["built"]:
        if b["config"].get("dla_core") is not None:  # the README now names the layers that fall back to the GPU
            atomic_write_text(b["dir"] / "README.md", _readme(b["config"], out["build"]))
        out["engine"] = b["dir"] / "model.engine"
        out["files"] += [
            p for p in (b["dir"] / "model.engine", b["dir"] / "build.json", b["dir"] / "timing.cache") if p.is_file()
        ]
    return out


def dla_note(res: dict[str, Any]) -> str:
    """One line on the DLA: requested only (never claimed before TensorRT built it), or its layer report."""
    cfg = res["config"]
    core = cfg.get("dla_core")
    if not res.get("built"):
        return f"DLA core {core} requested; NO DLA engine was built here (see the bundle README)"
    rep = (res.get("build") or {}).get("build", {}).get("dla")
    if rep:
        fb = rep["gpu_fallback"]
        return (
            f"DLA core {core}: {rep['on_dla']} of {rep['layers']} layers on the DLA, {len(fb)} fall back to the GPU"
            + (f" ({', '.join(x['name'] for x in fb[:5])}{', ...' if len(fb) > 5 else ''})" if fb else "")
        )
    log = (res.get("build") or {}).get("trtexec_layers")
    if log:
        return f"DLA core {core}: trtexec reports {len(log['dla'])} DLA layer group(s), {len(log['gpu'])} GPU layer(s)"
    return f"DLA core {core}: engine built, but the build left no DLA layer report"


# ---- format registration -----------------------------------------------------------------------


def _build(ctx: Any) -> Any:
    from compress.export.context import FormatArtifact

    cfg = ctx.config
    res = to_tensorrt(
        ctx.onnx.path,
        ctx.out / "tensorrt",
        precision=cfg.precision,
        input_shape=tuple(ctx.onnx.input_shape),
        dynamic=cfg.dynamic,
        remote=cfg.remote,
        max_batch=cfg.max_batch,
        workspace_mb=cfg.workspace_mb,
        dla_core=cfg.dla_core,
        dla_gpu_fallback=cfg.dla_gpu_fallback,
        parity_inputs=ctx.parity_inputs,
        parity_reference=ctx.parity_reference,
        parity_source=ctx.metadata.get("compress.parity_inputs", ""),
        calib_inputs=ctx.calib_inputs,
    )
    notes = []
    if cfg.dla_core is not None:
        notes.append(dla_note(res))
    if res["built"] is None:
        notes.append(
            "engine NOT built: TensorRT and a CUDA GPU are not available here; run build_engine.py "
            "(or build_engine.sh) in the bundle on the target, or pass --remote user@host"
        )
        return FormatArtifact(
            format="tensorrt",
            kind="tensorrt-bundle",
            path=res["bundle"],
            files=res["files"],
            verified=["bundle written"],
            parity_runtime=None,
            precision=cfg.precision,
            notes=notes,
            info={"built": None, "bundle": res["config"]},
        )
    rec = res["build"]
    info = {"built": res["built"], "build": rec, "bundle": res["config"]}
    if res["built"] == "remote":
        parity = rec.get("parity")
        notes.append(
            f"engine built on {rec.get('remote')} with {rec.get('builder')}; "
            + ("parity checked there" if parity else "parity NOT checked (built with trtexec)")
        )
        return FormatArtifact(
            format="tensorrt",
            kind="tensorrt-engine",
            path=res["engine"],
            files=res["files"],
            verified=[f"built on {rec.get('gpu', rec.get('remote'))}"],
            parity_runtime=None,
            precision=cfg.precision,
            notes=notes,
            info=info | {"remote_parity": parity},
        )
    return FormatArtifact(
        format="tensorrt",
        kind="tensorrt-engine",
        path=res["engine"],
        files=res["files"],
        verified=[f"built on {rec.get('gpu')} with TensorRT {rec.get('tensorrt')}"],
        parity_runtime="tensorrt",
        precision=cfg.precision,
        notes=notes,
        info=info,
    )


def _register() -> None:
    from compress.export.formats import FORMATS, Format, register

    if "tensorrt" not in FORMATS:
        register(
            Format(
                name="tensorrt",
                aliases=("trt", "engine", "tensorrt-engine"),
                suffix=".engine",
                dtypes=("fp32", "fp16", "int8"),
                dynamic_batch=True,
                needs_gpu=True,
                runtime="tensorrt",
                description="TensorRT engine built on the target (here if TensorRT+CUDA exist, or --remote), "
                "else a device build bundle",
                build=_build,
            )
        )


_register()
