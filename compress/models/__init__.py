"""Model references: one way to turn what the user names (``timm:NAME``, a model directory,
a search run, a supernet checkpoint plus subnet) into a static ``nn.Module`` with metadata.

A *model directory* is ``model.json`` (how to rebuild the architecture: a base model plus the
recorded transforms) and ``model.safetensors`` (the weights). No pickle anywhere.
"""

# This package's own model sources register themselves on import (timm:NAME, file.py:factory);
# other packages' sources live in their source.py modules (compress.models.ref.source_modules).
from compress.models import pyfile, timm_source  # noqa: F401
from compress.models.ref import (
    RESOLVERS,
    TRANSFORMS,
    LoadedModel,
    Transform,
    load_model,
    save_model_dir,
)

__all__ = ["LoadedModel", "Transform", "TRANSFORMS", "RESOLVERS", "load_model", "save_model_dir"]
