"""``compress import-ofa STATE_DICT --out CKPT``: convert an OFA-MobileNetV3 supernet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compress.cli.common import JsonOpt, console, emit_json
from compress.cli.main import app


@app.command("import-ofa")
def import_ofa_cmd(
    state_dict: Annotated[
        Path,
        typer.Argument(
            help="OFA state_dict (ofa_mbv3_d234_e346_k357_w1.0 / w1.2; "
            "torch file loaded with weights_only=True, or safetensors)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output checkpoint (.safetensors).")],
    fp16: Annotated[bool, typer.Option("--fp16", help="Store weights as float16.")] = False,
    json: JsonOpt = False,
) -> None:
    """Import Once-for-All MobileNetV3 weights into the `ofa-mbv3` family."""
    from compress.supernet.ofa_import import import_ofa

    res = import_ofa(state_dict, out=out, fp16=fp16)
    if json:
        emit_json(res)
        return
    console.print(
        f"wrote {res['out']}: ofa-mbv3 width {res['width_mult']}, {res['num_classes']} classes, "
        f"{res['num_tensors']} tensors"
    )
