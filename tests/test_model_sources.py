"""Model sources register themselves from their own modules; ``compress.models.ref`` names none.

``load_model`` imports every package's ``source.py`` on first use (found by that name on disk), and
``compress.models`` imports its own sources (timm, file.py:factory); a source registered in-process
is used like the built-in ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compress.core.errors import UsageError
from compress.models import ref


def test_ref_lists_no_source_and_finds_every_source_module():
    text = Path(ref.__file__).read_text(encoding="utf-8")
    for mod in ("timm_source", "pyfile", "supernet.source", "search.source", "prune.source", "ftwt.source"):
        assert mod not in text, f"compress/models/ref.py names {mod}; sources register themselves"
    assert ref.source_modules() == [
        "compress.prune.ftwt.source",
        "compress.prune.source",
        "compress.prune.updp.source",
        "compress.search.source",
        "compress.supernet.source",
    ]
    ref._ensure_builtin()
    for name in ("timm", "pyfile", "supernet", "search", "small", "efficientnet-lite0"):
        assert name in ref.RESOLVERS
    for kind in ("timm", "pyfile", "subnet", "small"):
        assert kind in ref.BASE_KINDS
    for t in ("updp-merge", "ftwt-gates"):
        assert t in ref.TRANSFORMS


def test_a_source_registered_in_process_is_loaded_and_saved(monkeypatch, tmp_path):
    import torch.nn as nn

    monkeypatch.setattr(ref.RESOLVERS, "_items", dict(ref.RESOLVERS._items))
    monkeypatch.setattr(ref.RESOLVERS, "_aliases", dict(ref.RESOLVERS._aliases))
    monkeypatch.setattr(ref, "BASE_KINDS", dict(ref.BASE_KINDS))

    def build(base: dict[str, Any]) -> ref.LoadedModel:
        module = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, int(base["classes"])))
        return ref.LoadedModel(module=module, input_shape=(3, 4, 4), num_classes=int(base["classes"]), source=base)

    class ToySource:
        def matches(self, r: str) -> bool:
            return r.startswith("toy:")

        def load(self, r: str, **opts: Any) -> ref.LoadedModel:
            return build({"kind": "toy", "classes": int(r.split(":", 1)[1])})

    ref.RESOLVERS.add("toy", ToySource())
    ref.register_base_kind("toy", build)
    lm = ref.load_model("toy:5")
    assert lm.num_classes == 5 and lm.source == {"kind": "toy", "classes": 5}
    back = ref.load_model(ref.save_model_dir(tmp_path / "m", lm))  # rebuilt through the base kind
    assert back.source == lm.source and back.input_shape == (3, 4, 4)
    with pytest.raises(UsageError, match="model not found: 'toyy:5'"):
        ref.load_model("toyy:5")
