"""Files shipped inside the package: device profiles and the embedded default supernet.

They are package data (``compress.hardware_profiles``, ``compress/supernet/default/``) and are
found through :mod:`importlib.resources`, so the editable install of the repository and an
installed wheel resolve them the same way - never relative to the source tree.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from compress.core.errors import Failure


def package_path(package: str, *parts: str) -> Path:
    """The real path of ``parts`` inside ``package`` (a directory or file shipped as package data).

    Callers need real paths (profiles are globbed, safetensors memory-maps the supernet), so an
    installation that keeps ``compress`` inside a zip archive is refused with the fix.
    """
    try:
        node = resources.files(package)
    except ModuleNotFoundError:
        raise Failure(f"package data '{package}' is missing from this installation; reinstall compress") from None
    for part in parts:
        node = node.joinpath(part)
    if not isinstance(node, Path):
        raise Failure(
            f"'{package}' is not installed as plain files (a zip archive?); "
            "install compress unpacked (pip install compress)"
        )
    return node
