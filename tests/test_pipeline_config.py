"""Pipeline YAML validation (one-line errors with suggestions) and the stage cache's crash safety."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compress.core.errors import UsageError

GOOD = """
name: t
supernet: /nonexistent.safetensors
devices:
  - {name: local-cpu, budget_ms: 1.0}
"""


def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


def _load(tmp_path, text):
    from compress.pipeline.config import load_pipeline

    return load_pipeline(_yaml(tmp_path, text))


def test_good_yaml_and_demo_yaml_validate(tmp_path):
    from compress.pipeline.config import load_pipeline

    cfg = _load(tmp_path, GOOD)
    assert cfg.devices[0].budget_ms == 1.0 and cfg.prune.method == "updp"
    demo = load_pipeline(Path(__file__).parents[1] / "examples" / "demo.yaml")
    assert {d.name for d in demo.devices} == {"jetson", "local-cpu"} and demo.export.formats[-1] == "tensorrt"
    ci = Path(__file__).parents[1] / "examples" / "ci"
    assert load_pipeline(ci / "release-gate.yaml").gates.min_top1 is not None
    assert load_pipeline(ci / "release-gate-jetson.yaml").bench.runtimes == ["tensorrt"]
    import yaml

    for wf in ("github-actions.yml", "github-actions-jetson.yml", "gitlab-ci.yml"):
        text = (ci / wf).read_text()
        assert yaml.safe_load(text) and "compress pipeline examples/ci/release-gate" in text


@pytest.mark.parametrize(
    "text, expect",
    [
        (GOOD + "serach: {population: 10}\n", ["unknown key 'serach'", "did you mean 'search'"]),
        (GOOD + "search: {populaton: 10}\n", ["search.populaton", "did you mean 'population'"]),
        (GOOD + "prune: {epochs: many}\n", ["prune.epochs", "integer"]),
        (GOOD + "search: {algorithm: genetic}\n", ["search.algorithm", "evolution"]),
        ("name: t\nsupernet: x.safetensors\n", ["devices", "required field is missing"]),
        ("name: t\ndevices: []\n", ["devices", "at least 1"]),
        (GOOD + "train: {epochs: 1}\n", ["give one of `supernet`, `model` or `train`"]),
        ("name: t\ndevices:\n  - {name: local-cpu, budget_ms: -1}\n", ["budget_ms", "greater than 0"]),
    ],
)
def test_broken_yaml_is_one_line_usage_error(tmp_path, text, expect):
    with pytest.raises(UsageError) as e:
        _load(tmp_path, text)
    msg = str(e.value)
    assert "\n" not in msg and "p.yaml" in msg
    for part in expect:
        assert part in msg, msg


def test_device_errors_fail_before_anything_is_written(tmp_path):
    from compress.pipeline.runner import run_pipeline

    bad = _yaml(tmp_path, GOOD.replace("local-cpu", "jetsn"))
    with pytest.raises(UsageError, match="jetson"):
        run_pipeline(bad, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    dup = _yaml(tmp_path, GOOD + "  - {name: cpu}\n")
    with pytest.raises(UsageError, match="listed twice"):
        run_pipeline(dup, out=tmp_path / "run")
    with pytest.raises(UsageError, match="checkpoint not found"):
        run_pipeline(_yaml(tmp_path, GOOD), out=tmp_path / "run")
    ck = tmp_path / "sn.safetensors"
    ck.write_bytes(b"x")
    with pytest.raises(UsageError, match="prune.device 'jetson' is not one of"):
        run_pipeline(
            _yaml(tmp_path, GOOD.replace("/nonexistent.safetensors", str(ck)) + "prune: {device: jetson}\n"),
            out=tmp_path / "run",
        )
    assert not (tmp_path / "run").exists()
    with pytest.raises(UsageError, match="no pipeline run to continue"):
        run_pipeline(_yaml(tmp_path, GOOD), out=tmp_path / "run", resume=True)


def test_cli_exit_code_2_and_one_line(tmp_path):
    from compress.cli.main import app

    r = CliRunner().invoke(app, ["pipeline", str(_yaml(tmp_path, GOOD + "gats: {}\n"))])
    assert r.exit_code == 2
    assert "did you mean 'gates'" in r.output


def test_stage_store_commit_is_atomic_and_verified(tmp_path):
    from compress.pipeline.cache import StageStore, stage_key

    st = StageStore(tmp_path)
    k1 = stage_key("search", 1, {"budget": 1.0}, {"profile": "abc"}, {})
    k2 = stage_key("search", 1, {"budget": 2.0}, {"profile": "abc"}, {})
    assert k1 != k2 and k1 == stage_key("search", 1, {"budget": 1.0}, {"profile": "abc"}, {})
    work, resumed = st.begin("search", k1, resume=False)
    assert not resumed
    (work / "half.json").write_text("{")  # killed here: nothing committed
    assert st.lookup("search", k1) is None
    work, resumed = st.begin("search", k1, resume=True)  # resuming the same key keeps the work
    assert resumed and (work / "half.json").exists()
    work, resumed = st.begin("search", k2, resume=True)  # another key: wiped
    assert not resumed and not (work / "half.json").exists()
    (work / "out.json").write_text(json.dumps({"x": 1}))
    rec = st.commit("search", k2, {"file": "out.json"}, inputs={})
    assert rec["files"]["out.json"]["bytes"] == 8 and not st.partial("search").exists()
    assert st.lookup("search", k2)["result"] == {"file": "out.json"}
    assert st.lookup("search", k1) is None
    (st.final("search") / "out.json").write_text(json.dumps({"x": 2}))  # tampered output: not reused
    assert st.lookup("search", k2) is None
    # a crash between the two renames of a commit: the complete partial is promoted
    work, _ = st.begin("export", k1, resume=False)
    (work / "a.txt").write_text("a")
    st.commit("export", k1, {}, inputs={})
    import os

    os.replace(st.final("export"), st.partial("export"))
    assert st.lookup("export", k1) is not None
