"""``compress bench``: latency of artefacts on a device, locally or over SSH."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compress.cli.common import JsonOpt, OutOpt, ProfilesOpt, command_line, console, emit_json
from compress.cli.main import app
from compress.cli.power import PowerModeOpt, device_at
from compress.core.runs import claim_run_dir


@app.command("bench")
def bench_cmd(
    artifacts: Annotated[
        list[str],
        typer.Argument(
            help="ONNX file, OpenVINO .xml, TensorRT .engine, export run dir, or timm:NAME. Several are timed interleaved (A B A B ...).",
            show_default=False,
        ),
    ],
    device: Annotated[
        str, typer.Option("--device", "-d", help="Device profile (see `compress devices`).")
    ] = "local-cpu",
    power_mode: PowerModeOpt = None,
    runtime: Annotated[
        str,
        typer.Option(
            "--runtime",
            "-r",
            help="auto|onnxruntime|openvino|tensorrt|torch (auto: the device's first runtime that runs the artefact).",
        ),
    ] = "auto",
    precision: Annotated[
        str | None, typer.Option("--precision", help="fp32|fp16|bf16|int8 (must be one of the device's; default fp32).")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Batch size (fills a dynamic batch dim).")] = 1,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads for the runtime (default: the runtime's).")
    ] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs per artefact before timing.")] = 10,
    iterations: Annotated[
        int | None, typer.Option("--iterations", "-n", help="Timed runs per artefact (default 100).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Timed seconds per artefact instead of --iterations.")
    ] = None,
    rounds: Annotated[
        int, typer.Option("--rounds", help="Interleaved rounds; the reference model is re-timed between rounds.")
    ] = 5,
    image_size: Annotated[int | None, typer.Option("--image-size", help="Input size for timm:NAME models.")] = None,
    remote: Annotated[
        str | None, typer.Option("--remote", help="Run on user@host[:port] over SSH (your ~/.ssh/config and keys).")
    ] = None,
    ssh_config: Annotated[
        Path | None,
        typer.Option("--ssh-config", help="ssh config file instead of ~/.ssh/config (also COMPRESS_SSH_CONFIG)."),
    ] = None,
    remote_python: Annotated[
        str, typer.Option("--remote-python", help="Python on the remote device (needs numpy and the runtime).")
    ] = "python3",
    connect_timeout: Annotated[
        float, typer.Option("--connect-timeout", help="Seconds to wait for the SSH connection.")
    ] = 10.0,
    no_canary: Annotated[
        bool, typer.Option("--no-canary", help="Do not re-time the reference model (drift is then NOT controlled).")
    ] = False,
    no_fallback: Annotated[
        bool, typer.Option("--no-fallback", help="Never fall back to benchmark_app / trtexec on the device.")
    ] = False,
    csv: Annotated[bool, typer.Option("--csv", help="Also write bench.csv into --out.")] = False,
    out: OutOpt = None,
    profiles: ProfilesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Measure latency with warm-up, interleaving, drift control and device state."""
    device = device_at(device, power_mode)  # DEVICE@MODE: validated where the profile is resolved
    from compress.bench.api import bench
    from compress.bench.report import to_markdown
    from compress.cli.progress import RichProgress

    if out is not None:
        claim_run_dir(out, command=command_line())  # one writer per run directory, before any work

    with RichProgress(label="bench", bars=remote is None) as progress:
        if remote is not None:
            console.print(f"bench: copying to {remote} and running the agent there ...")
        res = bench(
            artifacts,
            device=device,
            runtime=runtime,
            precision=precision,
            batch=batch,
            threads=threads,
            warmup=warmup,
            iterations=iterations,
            duration_s=duration,
            rounds=rounds,
            image_size=image_size,
            remote=remote,
            ssh_config=ssh_config,
            remote_python=remote_python,
            connect_timeout=connect_timeout,
            canary=not no_canary,
            fallback=not no_fallback,
            out=out,
            csv=csv,
            command=command_line(),
            profiles_dir=profiles,
            progress=progress,
        )
    if json_out:
        emit_json(res)
    else:
        console.print(to_markdown(res), markup=False)
    if out is not None:
        console.print(f"bench: results in {out}/bench.json")
