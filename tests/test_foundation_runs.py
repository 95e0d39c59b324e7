"""Atomic writes, manifests, registry and model references."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from compress.core.errors import UsageError
from compress.core.registry import Registry
from compress.core.runs import RunDir, atomic_write_json, read_json, sha256_file


def test_killed_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "big.bin"
    code = textwrap.dedent(f"""
        import os, sys
        from compress.core.runs import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, 'wb') as fh:
                fh.write(b'x' * 1000)
                fh.flush()
                print('WRITING', flush=True)
                os.kill(os.getpid(), 9)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "WRITING"
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()  # only the hidden temp file may remain, never the target
    atomic_write_json(target, {"ok": 1})
    assert json.loads(target.read_text()) == {"ok": 1}


def test_exception_in_atomic_block_keeps_old_file(tmp_path):
    from compress.core.runs import atomic_path

    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_run_dir_manifest(tmp_path):
    inp = tmp_path / "in.txt"
    inp.write_text("data")
    run = RunDir(tmp_path / "run", command="compress test", seeds={"seed": 7})
    run.add_input("data", inp)
    out = run.write_json("result.json", {"a": 1})
    run.save_manifest()
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["seeds"] == {"seed": 7}
    assert m["inputs"]["data"]["sha256"] == sha256_file(inp)
    assert m["outputs"]["result.json"]["sha256"] == sha256_file(out)
    assert "torch" in m["versions"] and "python" in m["versions"]


def test_unwritable_run_dir(tmp_path):
    if os.geteuid() == 0:
        bad = tmp_path / "file"
        bad.write_text("")
        target = bad / "sub"  # a path below a regular file cannot be created, even by root
    else:
        target = tmp_path / "ro"
        target.mkdir(mode=0o500)
    with pytest.raises(UsageError, match="cannot write to output directory"):
        RunDir(target, command="x")


def test_read_json_corrupted(tmp_path):
    p = tmp_path / "t.json"
    p.write_text('{"a": [1, 2')
    with pytest.raises(UsageError, match="truncated or corrupted"):
        read_json(p)


def test_registry():
    r: Registry[int] = Registry("thing")
    r.add("alpha", 1, aliases=("a",))
    assert r.get("a") == 1 and r.get("ALPHA") == 1
    with pytest.raises(ValueError):
        r.add("alpha", 2)
    with pytest.raises(UsageError, match="did you mean 'alpha'"):
        r.get("alpah")


def test_timm_reference_and_model_dir_round_trip(tmp_path):
    import torch

    from compress.models import load_model, save_model_dir

    m = load_model("timm:resnet18", num_classes=10, in_chans=1, image_size=28)
    save_model_dir(tmp_path / "m", m)
    m2 = load_model(tmp_path / "m")
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(m.module(x), m2.module(x))
    assert m2.input_shape == (1, 28, 28) and m2.num_classes == 10
    with pytest.raises(UsageError, match="did you mean"):
        load_model("timm:resnet181")
    (tmp_path / "junk.bin").write_bytes(b"not a model")
    with pytest.raises(UsageError, match="not a model"):
        load_model(tmp_path / "junk.bin")
    w = tmp_path / "m" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(UsageError, match="truncated or corrupted"):
        load_model(tmp_path / "m")
