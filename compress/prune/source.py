"""Model-directory support for pruned models: the ``updp-merge`` transform and extra sources.

A UPDP output directory records ``{"name": "updp-merge", "blocks": [{"name", "kind", "form"}]}``;
:meth:`UpdpMerge.rebuild` replays the merges on a freshly built base model (same shapes, the
weights are then loaded from ``model.safetensors``).
"""

from __future__ import annotations

from typing import Any

from compress.models.ref import TRANSFORMS


class UpdpMerge:
    def rebuild(self, module: Any, record: dict[str, Any]) -> Any:
        from compress.prune.updp.surgery import rebuild_merged

        return rebuild_merged(module, list(record.get("blocks", [])))


if "updp-merge" not in TRANSFORMS:
    TRANSFORMS.add("updp-merge", UpdpMerge())

import compress.prune.updp.source  # noqa: E402,F401  (registers efficientnet-lite0)
