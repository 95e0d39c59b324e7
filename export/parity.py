"""Parity: the same inputs through PyTorch and a runtime, compared.

Metrics (over every output element of every sample):
  ``max_abs_err`` = max |y - ref|;  ``max_rel_err`` = max_abs_err / max |ref| (error relative to the
  output's scale; element-wise relative error is meaningless for logits near zero);
  ``top1_agreement`` = share of samples whose arg-max class is the same.
Thresholds per precision (:data:`THRESHOLDS`): fp32 runs agree with torch to about 1e-6 here
(ONNX Runtime and OpenVINO with ``INFERENCE_PRECISION_HINT=f32``), so 1e-4 leaves room for other
CPUs' kernels; fp16 weights/compute give ~1e-3, bf16 ~3e-3..1.5e-2 (OpenVINO bf16 on AVX512_BF16,
measured), int8 is looser still. A sample whose reference top-1 margin is below twice the
measured ``max_abs_err`` is a near-tie: it is counted in ``top1_agreement`` but reported in
``near_ties`` so a flip there is visible, not hidden.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from compress.core.errors import UsageError


@dataclass(frozen=True)
class Threshold:
    max_rel_err: float
    min_top1: float


THRESHOLDS: dict[str, Threshold] = {
    "fp32": Threshold(max_rel_err=1e-4, min_top1=0.99),
    "fp16": Threshold(max_rel_err=1e-2, min_top1=0.97),
    "bf16": Threshold(max_rel_err=5e-2, min_top1=0.95),
    "int8": Threshold(max_rel_err=2e-1, min_top1=0.90),
}


@dataclass
class ParityResult:
    runtime: str
    precision: str
    batches: list[int]
    samples: int
    inputs: str  # where the inputs came from
    max_abs_err: float
    max_rel_err: float
    top1_agreement: float
    near_ties: int
    input_sensitivity: float  # max over outputs of std across samples / max |ref|
    threshold: dict[str, float]
    passed: bool
    reason: str = ""
    warning: str = ""
    per_batch: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def compare(reference: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Pure metrics between two (N, K) logits arrays (see the module docstring)."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if ref.shape != out.shape:
        raise UsageError(f"parity: output shape {out.shape} differs from the PyTorch output {ref.shape}")
    if not np.all(np.isfinite(out)):
        return {"max_abs_err": float("inf"), "max_rel_err": float("inf"), "top1_agreement": 0.0, "near_ties": 0}
    abs_err = float(np.max(np.abs(out - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    rel = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else float("inf"))
    flat_r = ref.reshape(ref.shape[0], -1)
    flat_o = out.reshape(out.shape[0], -1)
    agree = float(np.mean(flat_r.argmax(1) == flat_o.argmax(1))) if ref.shape[0] else 1.0
    ties = 0
    if flat_r.shape[1] > 1:
        top2 = np.sort(flat_r, axis=1)[:, -2:]
        ties = int(np.sum((top2[:, 1] - top2[:, 0]) < 2 * abs_err))
    return {"max_abs_err": abs_err, "max_rel_err": rel, "top1_agreement": agree, "near_ties": ties}


def input_sensitivity(reference: np.ndarray) -> float:
    """How much the reference outputs vary across samples, relative to their scale. Near zero
    means the model ignores its input (e.g. random-initialised nets whose features collapse): then
    any runtime that returns the bias passes, and parity numbers say nothing."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return float(np.max(ref.std(axis=0)) / scale) if scale > 0 and len(ref) > 1 else 0.0


def judge(metrics: dict[str, float], precision: str) -> tuple[bool, str]:
    t = THRESHOLDS[precision]
    problems = []
    if not metrics["max_rel_err"] <= t.max_rel_err:
        problems.append(f"max_rel_err {metrics['max_rel_err']:.3g} > {t.max_rel_err:g}")
    if not metrics["top1_agreement"] >= t.min_top1:
        problems.append(f"top1_agreement {metrics['top1_agreement']:.4f} < {t.min_top1:g}")
    return (not problems), "; ".join(problems)


def parity_inputs(model: Any, *, data: str | None = None, samples: int = 64, seed: int = 0) -> tuple[np.ndarray, str]:
    """A real validation batch (``data``, else the model's recorded dataset) or, when the model
    records none, a seeded standard-normal batch. Returns (inputs, description)."""
    name = data or getattr(model, "dataset", None)
    c, h, w = model.input_shape
    if name:
        from compress.data import load_dataset

        if h != w:
            raise UsageError(f"parity data needs a square input; the model takes {h}x{w}")
        ds = load_dataset(name, image_size=h, channels=c, seed=seed)
        split = ds.val if len(ds.val) else ds.test
        x = split.images[:samples].numpy().astype(np.float32)
        return np.ascontiguousarray(x), f"{name} val[:{len(x)}] (seed {seed})"
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, c, h, w), dtype=np.float32)
    return x, f"standard normal x{samples} (seed {seed}; the model records no dataset, pass --data for a real batch)"


def reference_outputs(model: Any, inputs: np.ndarray, *, chunk: int = 16) -> np.ndarray:
    """fp32 PyTorch outputs (first output) for ``inputs``, through the shared torch runner."""
    from compress.export.runtimes import get_runner

    n = len(inputs)
    full = (n // chunk) * chunk
    outs = []
    if full:
        with get_runner("torch").load(model, batch=chunk) as s:
            outs += [s.run(inputs[i : i + chunk]).copy() for i in range(0, full, chunk)]
    if n > full:
        with get_runner("torch").load(model, batch=n - full) as s:
            outs.append(s.run(inputs[full:]).copy())
    return np.concatenate(outs, axis=0)


def run_artifact(
    artifact: Any,
    runtime: str,
    inputs: np.ndarray,
    *,
    batch: int,
    precision: str,
    threads: int | None = None,
    device: str | None = None,
) -> np.ndarray:
    """Run ``inputs`` through the runtime in chunks of ``batch`` (the tail is dropped if it does not fill one)."""
    from compress.export.runtimes import get_runner

    n = (len(inputs) // batch) * batch
    if n == 0:
        raise UsageError(f"parity needs at least {batch} samples for batch {batch}")
    outs = []
    with get_runner(runtime).load(artifact, precision=precision, threads=threads, device=device, batch=batch) as s:
        for i in range(0, n, batch):
            outs.append(s.run(inputs[i : i + batch]).copy())
    return np.concatenate(outs, axis=0)


def check_parity(
    artifact: Any,
    *,
    runtime: str,
    precision: str,
    inputs: np.ndarray,
    reference: np.ndarray,
    batches: list[int],
    source: str = "",
    threads: int | None = None,
    device: str | None = None,
) -> ParityResult:
    """Run ``artifact`` at each batch size in ``batches`` and compare with ``reference``."""
    if precision not in THRESHOLDS:
        raise UsageError(f"no parity threshold for precision '{precision}'")
    per = []
    worst = {"max_abs_err": 0.0, "max_rel_err": 0.0, "top1_agreement": 1.0, "near_ties": 0}
    for b in batches:
        out = run_artifact(artifact, runtime, inputs, batch=b, precision=precision, threads=threads, device=device)
        m = compare(reference[: len(out)], out)
        per.append({"batch": b, "samples": len(out), **m})
        worst = {
            "max_abs_err": max(worst["max_abs_err"], m["max_abs_err"]),
            "max_rel_err": max(worst["max_rel_err"], m["max_rel_err"]),
            "top1_agreement": min(worst["top1_agreement"], m["top1_agreement"]),
            "near_ties": max(worst["near_ties"], m["near_ties"]),
        }
    ok, reason = judge(worst, precision)
    t = THRESHOLDS[precision]
    sens = input_sensitivity(reference)
    warning = (
        (
            "the PyTorch outputs barely change with the input (sensitivity "
            f"{sens:.2g}): these parity numbers are not informative; use trained weights"
        )
        if sens < 1e-3
        else ""
    )
    return ParityResult(
        runtime=runtime,
        precision=precision,
        batches=list(batches),
        samples=max(p["samples"] for p in per),
        inputs=source,
        passed=ok,
        reason=reason,
        input_sensitivity=sens,
        warning=warning,
        threshold={"max_rel_err": t.max_rel_err, "min_top1": t.min_top1},
        per_batch=per,
        **worst,
    )
