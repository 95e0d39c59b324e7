"""Runtimes are named once, by their runner modules (``compress.export.runtimes``), and read by all.

The readers (device profiles, ``compress bench``'s artefact resolution, the benchmark agent's vendor
fallback, the pipeline's bench stage, ``guess_runtime``) must agree with the registry, and a runtime
added to the registry must be accepted by each of them without touching their modules.
"""

from __future__ import annotations

from typing import Any

import pytest

from compress.core.errors import UsageError
from compress.export import runtimes as rts
from compress.export.runtimes import ArtifactKind, Runner, Session


def test_the_builtin_runtimes_keep_their_names_kinds_and_fallbacks():
    # pinned: these were spelled out in bench/artifacts.py, bench/agent.py and pipeline/stages.py
    assert rts.runner_names() == ["onnxruntime", "openvino", "tensorrt", "torch"]
    assert rts.runtime_aliases() == {
        "ort": "onnxruntime",
        "onnx-runtime": "onnxruntime",
        "ov": "openvino",
        "trt": "tensorrt",
        "pytorch": "torch",
        "eager": "torch",
    }
    assert {k.name: rts.kind_runtimes(k.name) for k in rts.artifact_kinds()} == {
        "onnx": ("onnxruntime", "openvino"),
        "openvino-ir": ("openvino",),
        "tensorrt-engine": ("tensorrt",),
        "model-ref": ("torch", "onnxruntime", "openvino"),
    }
    assert [rts.fallback_tool(n) for n in ("ov", "openvino", "trt", "onnxruntime", "torch", "nope")] == [
        "benchmark_app",
        "benchmark_app",
        "trtexec",
        "",
        "",
        "",
    ]
    assert rts.kind_of("a/m.PLAN").name == "tensorrt-engine" and rts.kind_of("m.bin") is None  # type: ignore[union-attr]


def test_every_reader_accepts_every_registered_name():
    from compress.bench.agent import _fallback
    from compress.bench.artifacts import canonical_runtime
    from compress.hardware.profile import get_profile

    prof = get_profile("local-cpu").model_copy(update={"runtimes": rts.runner_names()})
    for name in rts.runner_names():
        assert prof.check_runtime(name) == name
        assert canonical_runtime(name.upper()) == name
    for alias, name in rts.runtime_aliases().items():
        assert canonical_runtime(alias) == name
        assert _fallback(alias) == (name, rts.get_runner(name).fallback)
    with pytest.raises(UsageError, match="unknown runtime 'onnxrt'.*auto"):
        canonical_runtime("onnxrt")


class _ToySession(Session):
    runtime = "toy"


class ToyRunner(Runner):
    name = "toy"
    aliases = ("toy-rt",)
    suffixes = (".toy",)
    kind = ArtifactKind("toy-blob", "a toy blob", suffixes=(".toy",), files=("model.toy",), companions=(".toyw",))
    reads = ("toy-blob", "onnx")
    fallback = "toy_bench"

    def info(self) -> dict[str, Any]:
        return {"runtime": self.name, "available": False}

    def load(self, artifact: Any, **opts: Any) -> Session:  # type: ignore[override]
        raise NotImplementedError


@pytest.fixture
def toy(monkeypatch):
    """ToyRunner registered for one test (the registry's dicts restored afterwards)."""
    monkeypatch.setattr(rts.RUNNERS, "_items", dict(rts.RUNNERS._items))
    monkeypatch.setattr(rts.RUNNERS, "_aliases", dict(rts.RUNNERS._aliases))
    return rts.register_runtime(ToyRunner())


def test_a_registered_runtime_reaches_every_reader(toy, tmp_path):
    from compress.bench.agent import _fallback
    from compress.bench.artifacts import choose_runtime, resolve_artifact
    from compress.hardware.profile import HardwareProfile
    from compress.pipeline.stages import _runtime_kinds

    blob = tmp_path / "m.toy"
    blob.write_bytes(b"x")
    with pytest.raises(UsageError, match="toy blob m.toy has no m.toyw beside it"):
        resolve_artifact(str(blob))
    (tmp_path / "m.toyw").write_bytes(b"w")
    art = resolve_artifact(str(blob))
    assert art.files == {"toy-blob": str(blob)} and art.runtimes() == ["toy"]
    assert choose_runtime(art, "toy-rt", []) == "toy" and choose_runtime(art, "auto", ["onnxruntime", "toy"]) == "toy"
    with pytest.raises(UsageError, match="a toy blob; runtime 'onnxruntime' cannot run it"):
        choose_runtime(art, "onnxruntime", [])
    assert resolve_artifact(str(tmp_path)).files == {"toy-blob": str(blob)}  # found in a run directory
    assert rts.kind_runtimes("onnx") == ("onnxruntime", "openvino", "toy")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.toy").write_bytes(b"x")
    assert rts.guess_runtime(blob) == "toy" and rts.guess_runtime(run) == "toy"
    assert _fallback("toy-rt") == ("toy", "toy_bench")
    assert _runtime_kinds("toy") == ("toy-blob", "onnx")
    prof = HardwareProfile(name="x", kind="cpu", vendor="v", runtimes=["toy", "onnxruntime"], precisions=["fp32"])
    assert prof.check_runtime("toy") == "toy"


def test_profiles_refuse_an_unregistered_runtime():
    from pydantic import ValidationError

    from compress.hardware.profile import HardwareProfile

    with pytest.raises(ValidationError, match="unknown runtime 'toy'; choose one of: onnxruntime, openvino"):
        HardwareProfile(name="x", kind="cpu", vendor="v", runtimes=["toy"], precisions=["fp32"])


def test_a_clashing_runtime_is_refused(toy):
    class Clash(ToyRunner):
        name = "toy2"
        aliases = ()

    with pytest.raises(ValueError, match="artefact kind 'toy-blob' of runtime 'toy2' clashes with 'toy'"):
        rts.register_runtime(Clash())

    class Again(ToyRunner):
        kind = None

    with pytest.raises(ValueError, match="runtime 'toy' is registered twice"):
        rts.register_runtime(Again())
