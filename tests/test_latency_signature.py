"""Block signatures and the compiled space: every block of random subnets is enumerated."""

from __future__ import annotations

import numpy as np
import pytest

from compress.core.errors import UsageError
from compress.latency.compiled import compile_space, load_compiled, save_compiled
from compress.latency.signature import KINDS, MERGED_KINDS, BlockSignature, signature_of
from compress.supernet import family_names, get_space


def test_key_round_trip_every_kind() -> None:
    for kind in KINDS:
        s = BlockSignature(
            kind=kind,
            in_hw=14,
            in_ch=24,
            out_hw=7,
            out_ch=40,
            kernel=5,
            mid=72,
            stride=2,
            se=True,
            se_mid=24,
            act="h_swish",
            residual=True,
            norm=True,
            bias=True,
            has_expand=False,
            layer_scale=True,
        )
        assert s.act == "hswish"
        assert BlockSignature.from_key(s.key()) == s
        assert BlockSignature.from_dict(s.to_dict()) == s
    assert set(MERGED_KINDS) <= set(KINDS)


def test_bad_signatures_error_cleanly() -> None:
    with pytest.raises(UsageError, match="unknown block kind 'mbconvv'.*did you mean 'mbconv'"):
        BlockSignature(kind="mbconvv", in_hw=8, in_ch=8, out_hw=8, out_ch=8)
    with pytest.raises(UsageError, match="must be positive"):
        BlockSignature(kind="conv", in_hw=0, in_ch=8, out_hw=8, out_ch=8)
    with pytest.raises(UsageError, match="malformed block signature key"):
        BlockSignature.from_key("conv-in:8x8-out")
    with pytest.raises(UsageError, match="unknown field"):
        BlockSignature.from_dict({"kind": "conv", "in_hw": 8, "in_ch": 8, "out_hw": 8, "out_ch": 8, "kernal": 3})


def test_signature_of_block_spec_keeps_every_shape_field() -> None:
    space = get_space("mbv3-small-input")
    for spec in space.block_specs(space.max_config()):
        sig = signature_of(spec)
        assert (
            sig.kind,
            sig.in_hw,
            sig.in_ch,
            sig.out_hw,
            sig.out_ch,
            sig.kernel,
            sig.mid,
            sig.stride,
            sig.se,
            sig.se_mid,
            sig.residual,
        ) == (
            spec.kind,
            spec.in_hw,
            spec.in_ch,
            spec.out_hw,
            spec.out_ch,
            spec.kernel,
            spec.mid,
            spec.stride,
            spec.se,
            spec.se_mid,
            spec.residual,
        )


@pytest.mark.parametrize("family", family_names())
def test_enumeration_covers_every_block_of_200_random_subnets(family: str) -> None:
    space = get_space(family)
    comp = compile_space(space, check=0)
    allsigs = set(comp.signatures)
    genes = space.sample_genes(np.random.default_rng(123), 200)
    via_arrays = comp.signatures_of(genes)
    for g, got in zip(genes, via_arrays):
        want = [signature_of(s) for s in space.block_specs(space.from_genes(g))]
        assert sorted(got) == sorted(want)  # the vectorised lookup gives exactly the subnet's layers
        assert set(want) <= allsigs  # and the enumeration contains all of them


def test_compiled_space_disk_round_trip(tmp_path) -> None:
    space = get_space("convnext-small-input")
    comp = compile_space(space)
    save_compiled(comp, tmp_path / "c.npz")
    back = load_compiled(tmp_path / "c.npz")
    g = space.sample_genes(np.random.default_rng(0), 50)
    assert back.signatures == comp.signatures
    assert (back.layer_sig_ids(g) == comp.layer_sig_ids(g)).all()
