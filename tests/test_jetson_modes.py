"""Jetson power modes: parsing DEVICE@MODE / --power-mode, refusals, tables per mode, board state,
off-TTY table output, and the search's early infeasible-budget error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compress.core.errors import UsageError
from compress.hardware import get_profile
from compress.hardware.modes import (
    mode_mismatch,
    parse_jetson_clocks,
    parse_nvpmodel,
    split_device,
)
from compress.hardware.profile import check_measured_mode

sys.path.insert(0, str(Path(__file__).parent))


# ---- parsing -------------------------------------------------------------------------------------


def test_device_at_mode_and_power_mode_option_agree():
    assert split_device("jetson-agx-orin@30W", None) == ("jetson-agx-orin", "30W")
    assert split_device("jetson-agx-orin", "30W") == ("jetson-agx-orin", "30W")
    assert split_device("jetson-agx-orin@30w", "30W") == ("jetson-agx-orin", "30w")
    with pytest.raises(UsageError, match="names power mode '15W' but --power-mode is '30W'"):
        split_device("jetson-agx-orin@15W", "30W")
    with pytest.raises(UsageError, match="ends in '@'"):
        split_device("jetson-agx-orin@", None)


def test_modes_resolve_with_their_figures_and_default():
    maxn = get_profile("agx-orin")
    assert maxn.power_mode == "MAXN" and maxn.spec.peak["int8"].value == 85.5
    w30 = get_profile("jetson-agx-orin", power_mode="mode_30w")  # nvpmodel name, any case
    assert w30.power_mode == "30W" and w30.spec.peak["int8"].value == 20.5
    maxq = get_profile("jetson-agx-orin@MaxQ")
    assert maxq.power_mode == "MAXQ_MLPERF" and maxq.spec.memory_bandwidth.value == 136.5
    assert abs(maxq.spec.clock_ghz.value - 0.62475) < 1e-9
    assert get_profile("jetson").power_mode == "MAXN_SUPER"  # `jetson` = Orin Nano Super at MAXN_SUPER
    assert get_profile("jetson-orin-nano-original").spec.clock_ghz.value == 0.625
    assert get_profile("orin-nx").spec.peak["int8"].value == 30.0  # the GPU alone; the DLAs are their own engine
    assert get_profile("orin-nx").dla.cores == 2 and get_profile("jetson").dla is None


def test_unknown_mode_close_match_lists_the_devices_modes():
    with pytest.raises(UsageError) as e:
        get_profile("jetson-agx-orin@31W")
    msg = str(e.value)
    assert "unknown power mode '31W' for jetson-agx-orin" in msg and "did you mean" in msg and "'30W'" in msg
    assert "MAXN, 50W, 30W, 15W, MAXQ_MLPERF" in msg and "default MAXN" in msg
    with pytest.raises(UsageError, match="'nvidia-l4' has no power modes"):
        get_profile("nvidia-l4", power_mode="MAXN")


def test_mode_without_published_figures_is_not_estimated(tmp_path):
    from compress.latency.predict import LatencyModel

    with pytest.raises(
        UsageError, match=r"power mode 10W: its clocks and peaks are not published.*choose a mode with figures: MAXN"
    ):
        LatencyModel.load(device="jetson-orin-nx@10W", precision="int8", tables=tmp_path, warn=False)


def test_cli_unknown_mode_exit_2_and_default_mode_named(tmp_path):
    from typer.testing import CliRunner

    from compress.cli.main import app

    r = CliRunner().invoke(app, ["devices", "jetson-agx-orin", "--power-mode", "31W"])
    assert r.exit_code == 2 and "unknown power mode '31W'" in r.output
    r = CliRunner().invoke(
        app,
        [
            "latency",
            "predict",
            "--device",
            "jetson-agx-orin",
            "--precision",
            "int8",
            "--tables",
            str(tmp_path),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout[r.stdout.index("{") :])["model"]
    assert info["power_mode"] == "MAXN" and info["power_mode_is_default"] is True
    assert "calibrated to" in info["estimate_note"] and "leave-one-out error" in info["estimate_note"]
    assert info["estimate_calibration"]["published_figures"] >= 3
    r = CliRunner().invoke(app, ["search", "--device", "jetson", "--device", "local-cpu", "--power-mode", "7W"])
    assert r.exit_code == 2 and "DEVICE@MODE" in r.output


# ---- the board's state and tables per mode -----------------------------------------------------------

NVP_MAXN = "NV Power Mode: MAXN\n0\n"
CLOCKS = (
    "SOC family:tegra234  Machine:Jetson AGX Orin\nOnline CPUs: 0-11\n"
    "GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000\n"
    "EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1\n"
)


def test_nvpmodel_and_jetson_clocks_parsing():
    assert parse_nvpmodel(NVP_MAXN) == ("MAXN", 0)
    assert parse_nvpmodel("NV Power Mode: MODE_30W\n2") == ("MODE_30W", 2)
    assert parse_nvpmodel("command not found") is None
    c = parse_jetson_clocks(CLOCKS)
    assert c["gpu_current_mhz"] == 1300.5 and c["emc_max_mhz"] == 3199.0


def test_bench_warning_when_board_not_in_mode_asked():
    state = {"jetson": {"nvpmodel": NVP_MAXN, "jetson_clocks": CLOCKS}}
    assert mode_mismatch(get_profile("jetson-agx-orin"), state) is None
    msg = mode_mismatch(get_profile("jetson-agx-orin@30W"), state)
    assert msg and "nvpmodel mode 'MAXN'" in msg and "sudo nvpmodel -m 2" in msg
    assert mode_mismatch(get_profile("jetson-agx-orin@30W"), {"jetson": None}) is None  # not a Jetson: no claim
    with pytest.raises(UsageError, match="nothing was written to the 30W table"):
        check_measured_mode("jetson-agx-orin", "30W", state, where="user@orin")


def _table(tables: Path, device_key: str, **meta) -> Path:
    from compress.latency.signature import BlockSignature
    from compress.latency.spaces import resolve_space, space_label
    from compress.latency.table import Entry, LatencyTable

    label = space_label(resolve_space(None))
    t = LatencyTable.new(device=device_key, runtime="tensorrt", precision="int8", batch=1, space=label, **meta)
    t.path = LatencyTable.locate(
        device=device_key, runtime="tensorrt", precision="int8", batch=1, space=label, tables=tables
    )
    t.add(
        BlockSignature(kind="pool", in_hw=4, in_ch=8, out_hw=1, out_ch=8),
        Entry(count=10, median_ms=0.01, mean_ms=0.01, std_ms=0.0, min_ms=0.01, p10_ms=0.01),
    )
    t.save()
    return t.path


def test_table_measured_in_another_mode_is_refused_with_the_fix(tmp_path):
    from compress.latency.predict import LatencyModel

    # a table recorded at MAXN, found (copied by hand) where the 30W table lives
    p = _table(tmp_path, "jetson-agx-orin@30W", power_mode="MAXN")
    assert p.parent.name == "jetson-agx-orin@30W"
    with pytest.raises(UsageError) as e:
        LatencyModel.load(device="jetson-agx-orin@30W", precision="int8", tables=tmp_path, warn=False)
    msg = str(e.value)
    assert "measured in power mode 'MAXN', not jetson-agx-orin's '30W'" in msg
    assert "compress profile --device jetson-agx-orin --power-mode 30W" in msg and "sudo nvpmodel -m 2" in msg
    # the board's own nvpmodel output recorded in the table counts too (no explicit power_mode)
    p2 = _table(tmp_path / "b", "jetson-agx-orin@30W", host={"jetson": {"nvpmodel": NVP_MAXN}})
    with pytest.raises(UsageError, match="measured in power mode 'MAXN'"):
        LatencyModel.load(device="jetson-agx-orin@30W", precision="int8", tables=p2.parents[1], warn=False)


def test_tables_are_kept_per_mode(tmp_path):
    from compress.latency.predict import LatencyModel

    _table(tmp_path, "jetson-agx-orin@MAXN", power_mode="MAXN")
    # the MAXN table is not used at 30W: that mode falls back to its own estimate
    m = LatencyModel.load(device="jetson-agx-orin@30W", precision="int8", tables=tmp_path, warn=False)
    assert m.source == "estimated" and m.info()["power_mode"] == "30W"


# ---- what users see in CI logs -----------------------------------------------------------------------


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "compress", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_off_tty_tables_do_not_wrap_device_names():
    r = _run_cli("devices")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    for name in ("jetson-orin-nano-original", "jetson-orin-nano-4gb", "jetson-agx-orin"):
        row = [ln for ln in lines if f" {name} " in ln]
        assert row, f"{name} is not whole on any line:\n{r.stderr}"
    assert any("jetson-orin-nano-pre-super" in ln for ln in lines)  # a long alias stays whole too
    r = _run_cli("devices", "--check-estimates")
    assert r.returncode == 0, r.stderr
    assert any("jetson-agx-orin@MAXQ_MLPERF" in ln and "1.479" in ln for ln in r.stderr.splitlines())
    r = _run_cli("devices", "--json")  # --json unchanged: JSON on stdout, nothing else
    assert {d["name"] for d in json.loads(r.stdout)} >= {"jetson-orin-nano", "jetson-orin-nano-original"}


def test_search_table_off_tty_keeps_device_cell_whole():
    from rich.console import Console

    from compress.cli.common import OFF_TTY_WIDTH
    from compress.search.result import render_table

    class _C:
        predicted_latency_ms, predicted_top1, measured_top1, params, macs = 1.234, 0.9, None, 123456, 7_000_000

    class _D:
        device, runtime, precision, budget_ms, latency_source = (
            "jetson-orin-nano-original",
            "tensorrt",
            "int8",
            5.0,
            "estimated",
        )
        selected, pareto, latency_info = _C(), [], {"power_mode": "15W"}

    class _R:
        devices, predictor = [_D()], None

    import io

    buf = io.StringIO()
    render_table(_R(), Console(file=buf, width=OFF_TTY_WIDTH, force_terminal=False))
    assert any("jetson-orin-nano-original@15W" in ln for ln in buf.getvalue().splitlines())


# ---- search: an impossible budget fails before the accuracy predictor --------------------------------------


def test_infeasible_budget_fails_before_the_predictor(tmp_path, monkeypatch):
    from _search_fixtures import make_checkpoint

    from compress.search import api

    ckpt = make_checkpoint(tmp_path / "s.safetensors")

    def boom(*a, **k):  # the predictor must not even start
        raise AssertionError("accuracy predictor built before the budget was checked")

    monkeypatch.setattr(api, "build_accuracy_predictor", boom)
    with pytest.raises(
        UsageError, match=r"latency budget 0.0001 ms is infeasible on jetson-agx-orin at power mode 30W"
    ):
        api.search(
            devices=["jetson-agx-orin@30W"],
            latency_ms=[0.0001],
            supernet=ckpt,
            precision="int8",
            tables=tmp_path / "tables",
            seed=0,
        )
