"""UPDP on timm families: candidate blocks found from the traced graph, blocks skipped with reasons,
exactness of every merge, and ONNX / OpenVINO parity of the whole merged model.

For each family of :data:`compress.prune.updp.conformance.FAMILIES` (the smallest timm model of the
family, random init, 10 classes, train-time branches folded first):

* candidates and skipped blocks (:func:`find_candidates`), skip reasons grouped;
* stages: a stage is a block's parent path (``layer2``, ``blocks.3``, ``stages.1.blocks``); a stage
  with two or more blocks has identity-shortcut blocks, and should have a candidate;
* exactness per block (:func:`check_model`: λ = 0 equals the original block, every merged form equals
  λ = 1, random inputs, randomised BatchNorm statistics), worst relative error;
* the whole model with every candidate pruned at λ = 1 and merged (first form of each block), against
  the λ = 1 model in PyTorch, then exported with the project's exporter (``compress.export``, ONNX and
  OpenVINO, parity on random inputs) and its worst relative error per runtime.

No timing: nothing here depends on machine load. Writes ``benchmarks/results/updp/families.json``
and ``families.md`` (the table docs/updp-any-model.md quotes). Takes ~20 minutes on 2 shared cores,
half of it resnet50 (its 2048-channel dense merges are composed in float64); ``--models`` picks a few.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_updp_families.py [--models resnet18,deit_tiny_patch16_224]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "updp"


def _stage(name: str) -> str:
    return name.rpartition(".")[0] or name


def run_family(fam: dict, *, seed: int, export: bool) -> dict:
    import timm

    from compress.models import LoadedModel
    from compress.prune.updp.candidates import chain_of, find_candidates
    from compress.prune.updp.conformance import check_model, randomize_bn
    from compress.prune.updp.forms import forms_for
    from compress.prune.updp.graph import fold_reparameterizable
    from compress.prune.updp.surgery import insert_pruned, merge_model, pruned_blocks

    t0 = time.time()
    torch.manual_seed(seed)
    size = fam.get("size", 32)
    model = timm.create_model(fam["model"], num_classes=10).eval()
    randomize_bn(model, seed=seed)
    folded = fold_reparameterizable(model)
    cands, skipped = find_candidates(model)
    blocks_per_stage = Counter(_stage(n) for n in [c.name for c in cands] + [s.name for s in skipped])
    multi = {s for s, k in blocks_per_stage.items() if k >= 2}
    with_cand = {_stage(c.name) for c in cands}
    row: dict = {
        "family": fam["family"],
        "model": fam["model"],
        "input": [3, size, size],
        "folded": len(folded),
        "candidates": len(cands),
        "kinds": dict(Counter(c.kind for c in cands)),
        "skipped": len(skipped),
        "skip_reasons": dict(Counter(_short(s.reason) for s in skipped).most_common()),
        "stages_multi_block": len(multi),
        "stages_multi_block_with_candidate": len(multi & with_cand),
        "candidate_names": [c.name for c in cands],
        "skipped_blocks": [{"name": s.name, "class": s.cls, "reason": s.reason} for s in skipped],
    }
    if cands:
        rows = check_model(model, (3, size, size), seed=seed, batch=1)
        row["blocks_checked"] = len(rows)
        row["block_max_rel_error"] = max(r["max_rel_error"] for r in rows)
        m = copy.deepcopy(model)
        insert_pruned(m, [c.name for c in cands], lam=1.0)
        randomize_bn(m, seed=seed + 1)
        m.eval()
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            merged = merge_model(copy.deepcopy(m), {n: forms_for(chain_of(p))[0] for n, p in pruned_blocks(m).items()})
            # every merged block's output inside the whole model (the logits alone can hide errors: with
            # all activations gone a head's ReLU6 saturates), plus the logits
            row["model_merged_rel_error"] = _blockwise_error(m, merged, [c.name for c in cands], x)
        if export:
            from compress.export import export_model

            lm = LoadedModel(
                module=merged.eval(),
                input_shape=(3, size, size),
                num_classes=10,
                source={"kind": "bench", "name": fam["model"]},
            )
            with tempfile.TemporaryDirectory() as d:
                try:
                    res = export_model(
                        lm, out=Path(d) / "exp", formats=["onnx", "openvino"], batch=1, samples=8, seed=seed
                    )
                    out = res.to_json()
                    row["export"] = {
                        f["format"]: {"passed": f["passed"], "max_rel_err": f["max_rel_err"]} for f in out["formats"]
                    }
                except Exception as err:  # noqa: BLE001 - recorded, not hidden
                    row["export"] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
    row["seconds"] = round(time.time() - t0, 1)
    return row


def _blockwise_error(ref: torch.nn.Module, merged: torch.nn.Module, names: list[str], x: torch.Tensor) -> float:
    outs: dict[tuple[str, int], torch.Tensor] = {}
    hooks = [
        mod.get_submodule(n).register_forward_hook(lambda _m, _a, y, k=(n, i): outs.__setitem__(k, y))
        for i, mod in enumerate((ref, merged))
        for n in names
    ]
    try:
        ya, yb = ref(x), merged(x)
    finally:
        for h in hooks:
            h.remove()
    errs = [float((outs[(n, 1)] - outs[(n, 0)]).abs().max() / outs[(n, 0)].abs().max().clamp_min(1e-12)) for n in names]
    return max(errs + [float((yb - ya).abs().max() / ya.abs().max().clamp_min(1e-12))])


def _short(reason: str) -> str:
    """Group reasons that differ only in module names (``downsample.1`` vs ``shortcut.3``)."""
    if reason.startswith("downsample or projection shortcut"):
        return "downsample or projection shortcut (not an identity)"
    if "cat()" in reason:
        return "channel concat inside the block (Ghost module)"
    if "ops read the output" in reason:
        return "multi-branch op (attention)"
    if reason.startswith("torch.fx cannot trace"):
        return "not traceable by torch.fx"
    return reason


def to_markdown(rows: list[dict]) -> str:
    lines = [
        "| family | timm model | candidates (kinds) | skipped: reasons | multi-block stages with a candidate | "
        "worst block rel. error | merged model rel. error | ONNX / OpenVINO parity (max rel. error) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kinds = ", ".join(f"{k} {v}" for k, v in r["kinds"].items()) or "-"
        reasons = "; ".join(f"{v}x {k}" for k, v in r["skip_reasons"].items()) or "-"
        if r["folded"]:
            reasons = f"({r['folded']} blocks folded first) " + reasons
        exp = r.get("export") or {}
        if "error" in exp:
            par = exp["error"]
        else:
            par = " / ".join(f"{'pass' if v['passed'] else 'FAIL'} {v['max_rel_err']:.1e}" for v in exp.values()) or "-"
        lines.append(
            f"| {r['family']} | {r['model']} | {r['candidates']} ({kinds}) | {r['skipped']}: {reasons} | "
            f"{r['stages_multi_block_with_candidate']}/{r['stages_multi_block']} | "
            f"{r.get('block_max_rel_error', float('nan')):.1e} | {r.get('model_merged_rel_error', float('nan')):.1e} | {par} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from compress.core.runs import atomic_write_json
    from compress.prune.updp.conformance import FAMILIES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="comma list of timm model names from FAMILIES (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-export", action="store_true", help="skip the ONNX/OpenVINO export and parity")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    fams = FAMILIES if not a.models else [f for f in FAMILIES if f["model"] in a.models.split(",")]
    rows = []
    for fam in fams:
        r = run_family(fam, seed=a.seed, export=not a.no_export)
        print(
            f"{r['family']:<20} {r['model']:<24} {r['candidates']:>3} candidates, {r['skipped']:>3} skipped, "
            f"worst {r.get('block_max_rel_error', float('nan')):.1e}, {r['seconds']}s",
            file=sys.stderr,
            flush=True,
        )
        rows.append(r)
    a.out.mkdir(parents=True, exist_ok=True)
    prev = a.out / "families.json"
    if a.models and prev.is_file():  # a partial re-run replaces its rows and keeps the others
        old = {r["model"]: r for r in json.loads(prev.read_text())["rows"]}
        old.update({r["model"]: r for r in rows})
        rows = [old[f["model"]] for f in FAMILIES if f["model"] in old]
    import timm

    atomic_write_json(
        a.out / "families.json",
        {"seed": a.seed, "timm": timm.__version__, "torch": torch.__version__, "tolerance": 1e-5, "rows": rows},
    )
    md = to_markdown(rows)
    tmp = a.out / "families.md.tmp"
    tmp.write_text(md)
    tmp.replace(a.out / "families.md")
    print(md)
    return 0 if all(r.get("block_max_rel_error", 0) <= 1e-5 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
