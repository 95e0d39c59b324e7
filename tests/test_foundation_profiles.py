"""Hardware profiles: every shipped YAML validates, aliases resolve, bad input errors clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from compress.core.config import load_model_yaml
from compress.core.errors import UsageError
from compress.hardware.profile import HardwareProfile, builtin_profiles_dir, get_profile, load_profiles

SHIPPED = sorted(builtin_profiles_dir().glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_profile_loads(path: Path):
    prof = load_model_yaml(HardwareProfile, path)
    assert prof.name == path.stem
    assert prof.runtimes and prof.precisions
    assert prof.spec is not None
    for fig in [*prof.spec.peak.values(), prof.spec.memory_bandwidth]:
        assert fig.source  # every datasheet figure names its source


def test_jetson_alias_everywhere():
    assert get_profile("jetson").name == "jetson-orin-nano"
    assert get_profile("JETSON").name == "jetson-orin-nano"
    assert get_profile("jetson-orin-nano").default_runtime == "tensorrt"


def test_unknown_device_suggests():
    with pytest.raises(UsageError, match=r"unknown device 'jetsn'.*did you mean 'jetson'"):
        get_profile("jetsn")


def test_local_cpu_spec_is_detected():
    prof = get_profile("local-cpu")
    assert prof.spec.detected
    assert prof.spec.cores.value >= 1
    assert "detected at run time" in prof.spec.peak["fp32"].source


def test_runtime_and_precision_checks():
    prof = get_profile("jetson")
    assert prof.check_runtime(None) == "tensorrt"
    with pytest.raises(UsageError, match="does not run 'openvino'"):
        prof.check_runtime("openvino")
    with pytest.raises(UsageError, match="unknown runtime 'onnxrt'.*onnxruntime"):
        prof.check_runtime("onnxrt")
    with pytest.raises(UsageError, match="no precision 'bf16'"):
        prof.check_precision("bf16")


@pytest.mark.parametrize(
    "text, needle",
    [
        ("name: x\nkind: tpu\nvendor: v\nruntimes: [onnxruntime]\nprecisions: [fp32]\n", "kind"),
        ("name: x\nkind: gpu\nvendor: v\nruntimes: []\nprecisions: [fp32]\n", "runtimes"),
        (
            "name: x\nkind: gpu\nvendor: v\nruntimes: [onnxruntime]\nprecisions: [fp32]\n"
            "spec: {peak: {fp32: {value: 1, unit: T}}, memory_bandwidth: {value: 1, unit: G, source: abc}}\n",
            "spec.peak.fp32.source",
        ),
        ("name: x\nkind: gpu\n  vendor: : v\n", "invalid YAML"),
    ],
)
def test_broken_profile_errors_name_file_and_field(tmp_path, text, needle):
    f = tmp_path / "broken.yaml"
    f.write_text(text)
    with pytest.raises(UsageError) as ei:
        load_profiles(tmp_path)
    assert "broken.yaml" in str(ei.value) and needle in str(ei.value)


def test_duplicate_alias_is_an_error(tmp_path):
    data = {
        "name": "other",
        "aliases": ["jetson"],
        "kind": "edge",
        "vendor": "v",
        "runtimes": ["onnxruntime"],
        "precisions": ["fp32"],
    }
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(UsageError, match="'jetson' is used by both"):
        load_profiles(tmp_path)
