"""The OFA-MBv3 (w1.2) space of the ``ofa`` package's tutorial, for side-by-side search benchmarks.

Builds, from ONE per-block cost function, both the tutorial's string-keyed lookup table (a dict
shaped like its ``*_lookup_table.yaml``, queried by ``ofa.tutorial.latency_table.LatencyEstimator``)
and our vectorised equivalent over gene rows, so the two searchers see identical latencies. The
table values are a MAC-count proxy (ms = MACs / 1e7 + 0.02 per layer): this table is for timing
the searchers, not for predicting any device.

Gene layout (ours): ``[r, d0..d4, k0..k19, e0..e19]`` with r in {160, 176, 192, 208, 224}.
"""

from __future__ import annotations

import numpy as np

RES = [160, 176, 192, 208, 224]
KS = [3, 5, 7]
ES = [3, 4, 6]
DS = [2, 3, 4]
STRIDES = [2, 2, 2, 1, 2]
WIDTHS = [32, 48, 96, 136, 192]
ACTS = ["relu", "relu", "h_swish", "h_swish", "h_swish"]
SES = [False, True, False, True, True]
SIZES = np.array([5] + [3] * 5 + [3] * 20 + [3] * 20)
GROUPS = np.array([0] + list(range(1, 6)) + list(range(6, 26)) * 2)


def _ms(macs: float) -> float:
    return macs / 1e7 + 0.02


def _block_macs(hin, cin, hout, cout, mid, k, se):
    m = hin * hin * cin * mid + hout * hout * mid * k * k + hout * hout * mid * cout
    if se:
        m += 2 * mid * (mid // 4)
    return m


def _shape(s):
    return "x".join(str(v) for v in s)


def build_tables():
    """(lut dict for the tutorial LatencyEstimator per resolution, our arrays base[r], T[r, slot, k, e])."""
    luts = {}
    base = np.zeros(len(RES))
    table = np.zeros((len(RES), 20, 3, 3))
    for ri, r in enumerate(RES):
        lut = {}
        f = (r + 1) // 2
        key = f"Conv-input:{_shape([r, r, 3])}-output:{_shape([f, f, 24])}"
        lut[key] = {"mean": _ms(f * f * 3 * 24 * 9)}
        b = lut[key]["mean"]
        key = f"expanded_conv-input:{_shape([f, f, 24])}-output:{_shape([f, f, 24])}-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0"
        lut[key] = {"mean": _ms(f * f * 24 * 9 + f * f * 24 * 24)}
        b += lut[key]["mean"]
        # every slot's possible input size: slots are reached with the same fsize regardless of depth
        fsize, cin = f, 24
        for i in range(20):
            st, pos = divmod(i, 4)
            stride = STRIDES[st] if pos == 0 else 1
            idskip = 0 if pos == 0 else 1
            cout = WIDTHS[st]
            out_f = int((fsize - 1) / stride + 1)
            for ki, k in enumerate(KS):
                for ei, e in enumerate(ES):
                    mid = round(cin * e)
                    v = _ms(_block_macs(fsize, cin, out_f, cout, mid, k, SES[st]))
                    key = (
                        f"expanded_conv-input:{_shape([fsize, fsize, cin])}-output:{_shape([out_f, out_f, cout])}"
                        f"-expand:{mid}-kernel:{k}-stride:{stride}-idskip:{idskip}-se:{int(SES[st])}"
                        f"-hs:{int(ACTS[st] == 'h_swish')}"
                    )
                    lut[key] = {"mean": v}
                    table[ri, i, ki, ei] = v
            fsize, cin = out_f, cout
        # head: final fsize is the same for every depth
        for key, macs in (
            (
                f"Conv_1-input:{_shape([fsize, fsize, 192])}-output:{_shape([fsize, fsize, 1152])}",
                fsize * fsize * 192 * 1152,
            ),
            (f"AvgPool2D-input:{_shape([fsize, fsize, 1152])}-output:{_shape([1, 1, 1152])}", fsize * fsize * 1152),
            ("Conv_2-input:1x1x1152-output:1x1x1536", 1152 * 1536),
            ("Logits-input:1x1x1536-output:1000", 1536 * 1000),
        ):
            lut[key] = {"mean": _ms(macs)}
            b += lut[key]["mean"]
        base[ri] = b
        luts[r] = lut
    return luts, base, table


class GeneLatency:
    """Our vectorised per-block table over gene rows."""

    source = "estimated"

    def __init__(self, base: np.ndarray, table: np.ndarray) -> None:
        self.base, self.table = base, table
        self._slot = np.arange(20)

    def predict_genes(self, g: np.ndarray) -> np.ndarray:
        r, d = g[:, 0], g[:, 1:6]
        k, e = g[:, 6:26], g[:, 26:46]
        active = (self._slot % 4)[None, :] < (np.asarray(DS)[d])[:, self._slot // 4]
        vals = self.table[r[:, None], self._slot[None, :], k, e]
        return self.base[r] + (vals * active).sum(1)


_MAPS = None


def encode(g: np.ndarray) -> np.ndarray:
    """The tutorial's 128-d feature (spec2feats), vectorised over gene rows."""
    global _MAPS
    if _MAPS is None:
        m = tutorial_module("accuracy_predictor")
        _MAPS = (np.asarray([m.ks_map[k] for k in KS]), np.asarray([m.ex_map[e] for e in ES]))
    kmap, emap = _MAPS

    n = g.shape[0]
    slot = np.arange(20)
    active = (slot % 4)[None, :] < (np.asarray(DS)[g[:, 1:6]])[:, slot // 4]
    kcol = kmap[g[:, 6:26]] + 3 * slot[None, :]
    ecol = emap[g[:, 26:46]] + 60 + 3 * slot[None, :]
    x = np.zeros((n, 128), dtype=np.float32)
    rows = np.broadcast_to(np.arange(n)[:, None], kcol.shape)
    x[rows[active], kcol[active]] = 1
    x[rows[active], ecol[active]] = 1
    x[np.arange(n), 120 + (np.asarray(RES)[g[:, 0]] - 112) // 16] = 1
    return x


def to_sample(g: np.ndarray) -> dict:
    """Gene row -> the tutorial's sample dict."""
    return {
        "wid": None,
        "ks": [KS[i] for i in g[6:26]],
        "e": [ES[i] for i in g[26:46]],
        "d": [DS[i] for i in g[1:6]],
        "r": [RES[int(g[0])]],
    }


def tutorial_module(name: str):
    """Import ``ofa/tutorial/<name>.py`` by path: the package's ``ofa.tutorial/__init__`` imports
    ``gdown`` (a download helper that is not installed and not needed offline)."""
    import importlib.util
    import sys
    from pathlib import Path

    import ofa

    key = f"_ofa_tutorial_{name}"
    if key in sys.modules:
        return sys.modules[key]
    path = Path(ofa.__file__).parent / "tutorial" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(key, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[key] = mod
    spec.loader.exec_module(mod)
    return mod
