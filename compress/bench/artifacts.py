"""What the user names on ``compress bench`` -> a file one runtime can time, plus its predictions.

Forms: an ONNX file, an OpenVINO IR (``.xml`` + ``.bin``), a TensorRT engine (``.engine``,
``.plan``, ``.trt``), an export run directory (its ``manifest.json`` and the files in it), or
``timm:NAME`` (the torch runner, or exported to ONNX in a temp dir for ONNX Runtime/OpenVINO).

Predicted latencies are read from the ONNX metadata property ``compress.predicted_latency_ms``
or from the run directory's ``manifest.json`` key ``predictions``; both map a device name to
milliseconds (a number, or an object with ``latency_ms`` / ``predicted_ms`` / ``ms``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.core.errors import UsageError, unknown
from compress.export.runtimes import RUNNERS, artifact_kinds, kind_of, kind_runtimes, runner_names

# Runtime names, aliases, artefact kinds and their suffixes are declared by the runner modules
# (compress.export.runtimes); this module only reads them.
PREDICTION_KEYS = ("compress.predicted_latency_ms", "compress.predictions", "predicted_latency_ms", "predictions")


def _kind_label(kind: str) -> str:
    return next((k.label for k in artifact_kinds() if k.name == kind), kind)


@dataclass
class Artifact:
    """One artefact as given, with the files it offers per kind and its recorded predictions."""

    spec: str
    name: str
    files: dict[str, str] = field(default_factory=dict)  # kind -> path (or model reference)
    predictions: dict[str, float] = field(default_factory=dict)

    def runtimes(self) -> list[str]:
        out: list[str] = []
        for kind in self.files:
            out += [r for r in kind_runtimes(kind) if r not in out]
        return out

    def file_for(self, runtime: str) -> tuple[str, str]:
        """``(kind, path)`` that ``runtime`` reads; UsageError naming the fix when none."""
        for kind, path in self.files.items():
            if runtime in kind_runtimes(kind):
                return kind, path
        if not self.files:
            raise UsageError(f"{self.name}: nothing runnable found")
        what = " and ".join(_kind_label(k) for k in self.files)
        hint = f"use --runtime {self.runtimes()[0]}"
        if runtime == "tensorrt" and "onnx" in self.files:  # the one runtime whose artefact is built on the device
            hint += ", or build an engine with `compress export --format tensorrt` on the device"
        raise UsageError(f"{self.name} is {what}; runtime '{runtime}' cannot run it ({hint})")


def canonical_runtime(name: str) -> str:
    key = name.strip().lower()
    if key not in RUNNERS:
        raise unknown("runtime", name, [*runner_names(), "auto"])
    return RUNNERS.canonical(key)


def _parse_predictions(obj: Any) -> dict[str, float]:
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError:
            return {}
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for dev, v in obj.items():
            if isinstance(v, dict):
                v = next((v[k] for k in ("latency_ms", "predicted_ms", "ms", "predicted_latency_ms") if k in v), None)
            if isinstance(v, (int, float)) and v > 0:
                out[str(dev)] = float(v)
    return out


def onnx_predictions(path: Path) -> dict[str, float]:
    try:
        import onnx

        m = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not our job to validate the file here; the runner will
        return {}
    props = {p.key: p.value for p in m.metadata_props}
    for key in PREDICTION_KEYS:
        if key in props:
            got = _parse_predictions(props[key])
            if got:
                return got
    return {}


def _kind_of(p: Path) -> str | None:
    kind = kind_of(p)
    return kind.name if kind else None


def _from_dir(d: Path) -> Artifact:
    art = Artifact(spec=str(d), name=d.name)
    manifest: dict[str, Any] = {}
    if (d / "manifest.json").is_file():
        try:
            manifest = json.loads((d / "manifest.json").read_text())
        except json.JSONDecodeError:
            raise UsageError(f"{d / 'manifest.json'} is not valid JSON; the run directory may be corrupted") from None
    cands: list[Path] = []
    for entry in (manifest.get("outputs") or {}).values() if isinstance(manifest.get("outputs"), dict) else []:
        if isinstance(entry, dict) and entry.get("path"):
            q = Path(entry["path"])
            cands.append(q if q.is_absolute() else d / q)
    suffixes = [s for k in artifact_kinds() for s in k.suffixes]
    for pattern in [f"*{s}" for s in suffixes] + [f"*/*{s}" for s in suffixes]:
        cands += sorted(d.glob(pattern))
    for q in cands:
        kind = _kind_of(q)
        if kind and kind not in art.files and q.is_file() and "canary" not in q.name:
            art.files[kind] = str(q)
    if not art.files and (d / "model.json").is_file():
        art.files["model-ref"] = str(d)
    if not art.files:
        nouns = [k.noun for k in artifact_kinds() if k.suffixes]
        raise UsageError(
            f"no {', '.join(nouns[:-1])} or {nouns[-1]} found in {d}; pass a file or an export run directory"
        )
    art.predictions = _parse_predictions(manifest.get("predictions"))
    if not art.predictions and "onnx" in art.files:
        art.predictions = onnx_predictions(Path(art.files["onnx"]))
    return art


def resolve_artifact(spec: str) -> Artifact:
    """Classify ``spec``; missing files and unknown suffixes are one-line UsageErrors."""
    if spec.startswith("timm:"):
        if len(spec) <= 5:
            raise UsageError("timm: needs a model name, e.g. timm:resnet18")
        return Artifact(spec=spec, name=spec, files={"model-ref": spec})
    p = Path(spec).expanduser()
    if p.is_dir():
        return _from_dir(p)
    if not p.exists():
        raise UsageError(f"artefact not found: {p}")
    found = kind_of(p)
    if found is None:
        files = ", ".join(f"{k.label} ({'/'.join(k.suffixes)})" for k in artifact_kinds() if k.suffixes)
        raise UsageError(f"cannot benchmark '{p.name}': expected {files}, an export run directory or timm:NAME")
    for companion in found.companions:
        if not p.with_suffix(companion).is_file():
            raise UsageError(f"{found.noun} {p.name} has no {p.with_suffix(companion).name} beside it")
    kind = found.name
    art = Artifact(spec=spec, name=p.name, files={kind: str(p)})
    if kind == "onnx":
        art.predictions = onnx_predictions(p)
    return art


def choose_runtime(art: Artifact, runtime: str, device_runtimes: list[str]) -> str:
    """``auto``: the first of the device's runtimes that can run ``art``; else check ``runtime``."""
    if runtime == "auto":
        for rt in device_runtimes:
            if rt in art.runtimes():
                return rt
        raise UsageError(
            f"{art.name}: none of the device's runtimes ({', '.join(device_runtimes)}) can run it; "
            f"it runs on: {', '.join(art.runtimes())}"
        )
    rt = canonical_runtime(runtime)
    art.file_for(rt)
    return rt
