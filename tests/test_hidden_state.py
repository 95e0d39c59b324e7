"""Process-wide caches are bounded and hand out nothing a caller can change for the next caller."""

from __future__ import annotations

import numpy as np
import pytest

from compress.latency import compiled


def _fake_compiled(n: int) -> compiled.CompiledSpace:
    return compiled.CompiledSpace(
        gene_sizes=np.array([n, 2], dtype=np.int64),
        layer_names=["a"],
        deps=[np.array([0], dtype=np.int64)],
        strides=[np.array([1], dtype=np.int64)],
        sig_ids=[np.zeros(n, dtype=np.int32)],
        signatures=[],
    )


class _Space:
    def __init__(self, key: str) -> None:
        self.key = key

    def hash(self) -> str:
        return self.key


def test_the_compiled_space_memo_is_bounded_lru_and_read_only(monkeypatch):
    built: list[str] = []

    def fake_compile(space, **_kw):
        built.append(space.key)
        return _fake_compiled(3)

    monkeypatch.setattr(compiled, "compile_space", fake_compile)
    monkeypatch.setattr(compiled, "_MEMO", type(compiled._MEMO)())
    spaces = [_Space(f"s{i}") for i in range(compiled.MEMO_SIZE + 2)]
    first = compiled.compiled_space(spaces[0])
    assert compiled.compiled_space(spaces[0]) is first and built == ["s0"]  # memoised
    for sp in spaces[1:]:
        compiled.compiled_space(sp)
        compiled.compiled_space(spaces[0])  # kept in use: never the one dropped
    assert len(compiled._MEMO) == compiled.MEMO_SIZE
    assert "s0" in compiled._MEMO and "s1" not in compiled._MEMO and "s2" not in compiled._MEMO
    assert built == [s.key for s in spaces]
    with pytest.raises(ValueError, match="read-only"):
        first.sig_ids[0][0] = 5
    compiled.clear_memo()
    assert not compiled._MEMO


def test_cached_dataset_arrays_are_read_only_and_loads_stay_equal():
    from compress.data import datasets

    tx, ty, _, _ = datasets._raw("digits")
    with pytest.raises(ValueError, match="read-only"):
        tx[0, 0] = 1
    a = datasets.load_dataset("digits", seed=3)
    b = datasets.load_dataset("digits", seed=3)
    assert a.fingerprint == b.fingerprint
    assert bool((a.train.images == b.train.images).all()) and bool((a.test.labels == b.test.labels).all())
    a.train.images.add_(1.0)  # the tensors a caller gets are its own
    assert not bool((datasets.load_dataset("digits", seed=3).train.images == a.train.images).all())


def test_profiles_and_cpu_probe_are_copies():
    from compress.hardware.local import detected
    from compress.hardware.profile import get_profile

    p = get_profile("local-cpu")
    p.runtimes.append("torch")
    p.aliases.append("mine")
    q = get_profile("local-cpu")
    assert q is not p and "mine" not in q.aliases
    d = detected()
    d["cores"] = -1
    assert detected()["cores"] != -1
