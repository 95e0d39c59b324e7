"""Search spaces, configs, genes and encodings (pure numpy; no torch needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compress.core.errors import UsageError
from compress.supernet import SearchSpace, family_names, get_space

FAMS = ["mbv3-small-input", "convnext-small-input", "ofa-mbv3", "ofa-resnet"]


def test_registry_lists_all_families():
    assert sorted(family_names()) == sorted(FAMS)
    with pytest.raises(UsageError, match="did you mean 'ofa-mbv3'"):
        get_space("ofa-mbv")
    with pytest.raises(UsageError, match="unknown option"):
        get_space("ofa-mbv3", widht_mult=1.2)
    with pytest.raises(UsageError, match="1.0 or 1.2"):
        get_space("ofa-mbv3", width_mult=1.1)


@pytest.mark.parametrize("fam", FAMS)
def test_space_json_round_trip(fam):
    sp = get_space(fam)
    again = SearchSpace.from_dict(json.loads(sp.to_json()))
    assert again == sp and again.hash() == sp.hash()
    bad = sp.to_dict()
    bad["stages"][0]["depthz"] = [1]
    with pytest.raises(UsageError, match="unknown key 'depthz'"):
        SearchSpace.from_dict(bad)
    bad = sp.to_dict()
    bad["stages"][0]["kernels"] = [5, 3]
    with pytest.raises(UsageError, match="strictly increasing"):
        SearchSpace.from_dict(bad)


def test_ofa_mbv3_layout_matches_the_reference():
    sp = get_space("ofa-mbv3")
    assert [s.width for s in sp.stages] == [24, 40, 80, 112, 160]
    assert [s.se for s in sp.stages] == [False, True, False, True, True]
    assert sp.num_slots == 20 and sp.encoding_size == 128  # OFA's 60 + 60 + 8 predictor features
    assert sp.resolutions[0] == 128 and sp.resolutions[-1] == 224 and len(sp.resolutions) == 25
    sp12 = get_space("ofa-mbv3", width_mult=1.2)
    assert [s.width for s in sp12.stages] == [32, 48, 96, 136, 192]
    assert (sp12.head.final_expand, sp12.head.feature_mix) == (1152, 1536)


@pytest.mark.parametrize("fam", FAMS)
def test_genes_round_trip_and_canonical(fam):
    sp = get_space(fam)
    rng = np.random.default_rng(0)
    G = sp.sample_genes(rng, 200)
    assert G.shape == (200, sp.gene_sizes.size) and (G < sp.gene_sizes).all() and (G >= 0).all()
    for g in G[:50]:
        cfg = sp.from_genes(g)
        assert np.array_equal(sp.to_genes(cfg), g)
        assert sp.config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # inactive slot genes do not matter: randomising them gives the same config
    noisy = (rng.random(G.shape) * sp.gene_sizes).astype(np.int64)
    noisy[:, : 2 + sp.num_stages] = G[:, : 2 + sp.num_stages]
    act = sp.active_slots(G)
    n, b = sp.num_slots, 2 + sp.num_stages
    noisy[:, b : b + n][act] = G[:, b : b + n][act]
    noisy[:, b + n :][act] = G[:, b + n :][act]
    assert np.array_equal(sp.canonical_genes(noisy), G)
    assert sp.from_genes(noisy[0]) == sp.from_genes(G[0])
    # same seed, same samples
    assert np.array_equal(sp.sample_genes(np.random.default_rng(5), 10), sp.sample_genes(np.random.default_rng(5), 10))
    assert sp.sample(np.random.default_rng(1)) == sp.sample(np.random.default_rng(1))


@pytest.mark.parametrize("fam", FAMS)
def test_encoding_vectorised_matches_single(fam):
    sp = get_space(fam)
    G = sp.sample_genes(np.random.default_rng(1), 64)
    E = sp.encode_genes(G)
    assert E.shape == (64, sp.encoding_size) and E.dtype == np.float32
    for i in range(0, 64, 8):
        assert np.array_equal(sp.encode(sp.from_genes(G[i])), E[i])
    # active blocks have exactly one K and one E bit; the resolution exactly one
    n_active = sp.active_slots(G).sum(1)
    assert np.array_equal(E.sum(1), 2 * n_active + 1 + (1 if len(sp.width_mults) > 1 else 0))


def test_ofa_encoding_layout():
    sp = get_space("ofa-mbv3")
    cfg = sp.config_from_dict({"ks": [7] * 20, "e": [6] * 20, "d": [2, 3, 4, 2, 4], "r": 160})
    f = sp.encode(cfg)
    assert f[2] == 1 and f[0] == 0  # slot 0 K=7
    assert f[3 * 2 : 3 * 4].sum() == 0  # slots 2, 3 of stage 0 inactive -> zero K one-hot
    assert f[60 + 2] == 1 and f[60 + 6 : 60 + 12].sum() == 0
    assert f[120 + (160 - 112) // 16] == 1  # OFA's resolution bins


@pytest.mark.parametrize("fam", FAMS)
def test_key_hash_and_min_max(fam):
    sp = get_space(fam)
    lo, hi = sp.min_config(), sp.max_config()
    assert lo.key() != hi.key() and len(lo.hash()) == 12
    assert sp.count(lo).params < sp.count(hi).params and sp.count(lo).macs < sp.count(hi).macs
    assert sp.num_subnets() > 1000
    again = sp.config_from_dict(json.loads(hi.key()))
    assert again == hi and again.hash() == hi.hash()


def test_invalid_configs_error_cleanly():
    sp = get_space("mbv3-small-input")
    good = sp.max_config().to_dict()

    def mutate(**kw):
        d = json.loads(json.dumps(good))
        d.update(kw)
        return d

    cases = [
        (mutate(resolution=30), r"resolution = 30 .*allowed: \[28, 32\]"),
        (mutate(width=0.5), r"width = 0.5 .*allowed: \[0.75, 1.0\]"),
        (mutate(depths=[3, 3, 3]), "one per stage"),
        (mutate(depths=[4, 3, 3, 3]), r"depths\[0\] = 4 .*allowed: \[1, 2, 3\]"),
        (mutate(depths=[2, 3, 3, 3]), "depth 2 but 3 kernels"),
        (mutate(kernels=[[7, 7, 4], [7] * 3, [7] * 3, [7] * 3]), r"kernels\[0\]\[2\] = 4 .*allowed: \[3, 5, 7\]"),
        (
            mutate(expands=[[6, 6, 5], [6] * 3, [6] * 3, [6] * 3]),
            r"expands\[0\]\[2\] = 5.0 .*allowed: \[3.0, 4.0, 6.0\]",
        ),
        ({**good, "colour": 1}, "unknown key"),
        ({k: v for k, v in good.items() if k != "depths"}, "missing key"),
        (mutate(kernels="seven"), "invalid subnet config"),
        ([1, 2], "JSON object"),
    ]
    for data, pattern in cases:
        with pytest.raises(UsageError, match=pattern):
            sp.config_from_dict(data)
    with pytest.raises(UsageError, match="out of range"):
        sp.from_genes(np.full(sp.gene_sizes.size, 9))
    with pytest.raises(UsageError, match="length"):
        sp.from_genes(np.zeros(3, dtype=int))
    with pytest.raises(UsageError, match="OFA arch dict"):
        get_space("ofa-mbv3").config_from_dict({"ks": [3] * 19, "e": [3] * 20, "d": [2] * 5, "r": 128})


def test_ofa_dict_round_trip():
    sp = get_space("ofa-mbv3")
    for _ in range(20):
        cfg = sp.sample(np.random.default_rng(_))
        assert sp.from_ofa_dict(sp.to_ofa_dict(cfg)) == cfg


@pytest.mark.parametrize("fam", FAMS)
def test_block_specs_chain(fam):
    sp = get_space(fam)
    for cfg in (sp.min_config(), sp.max_config(), sp.sample(np.random.default_rng(3))):
        specs = sp.block_specs(cfg)
        assert specs[0].name == "stem" and specs[-1].kind == "linear"
        for a, b in zip(specs, specs[1:]):
            assert (a.out_ch, a.out_hw) == (b.in_ch, b.in_hw), (a, b)
        assert sum(1 for s in specs if s.slot >= 0) == sum(cfg.depths)
        assert len({s.key() for s in specs}) <= len(specs)
