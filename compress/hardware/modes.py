"""Power modes: resolving ``device@MODE`` / ``--power-mode``, the figures a mode changes, board state.

A Jetson is not one device but one per power mode: the same AGX Orin runs ResNet-50 2.35x slower
in MLPerf's MaxQ setting than at MAXN. A profile lists its modes (``power_modes``) with the
figures that change (GPU clock and peak per precision, EMC clock and bandwidth, online CPU cores,
DLA clock and peak), each with its source; :func:`apply_power_mode` returns the profile at one mode
(its ``spec`` carries that mode's figures, ``power_mode`` its name). Measured tables are keyed by
mode (``HardwareProfile.table_device``), and :func:`board_mode` / :func:`mode_mismatch` read the
mode a board is actually in from ``nvpmodel -q`` (recorded in every device-state snapshot, locally
and over SSH) so that a table or a benchmark taken in another mode is refused or flagged.

>>> split_device("jetson-agx-orin@30W", None)
('jetson-agx-orin', '30W')
>>> parse_nvpmodel("NV Power Mode: MODE_30W\\n2")
('MODE_30W', 2)
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any, NoReturn

from compress.core.errors import UsageError

if TYPE_CHECKING:
    from compress.hardware.profile import HardwareProfile, PowerMode


def split_device(name: str, power_mode: str | None) -> tuple[str, str | None]:
    """``"dev@MODE"`` -> ``("dev", "MODE")``; ``power_mode`` (``--power-mode``) must agree with it."""
    base, sep, at = str(name).partition("@")
    at_mode = at.strip() if sep else None
    if sep and not at_mode:
        raise UsageError(
            f"device '{name}' ends in '@' without a power mode; write DEVICE@MODE (e.g. jetson-agx-orin@30W)"
        )
    pm = power_mode.strip() if power_mode else None
    if at_mode and pm and at_mode.lower() != pm.lower():
        raise UsageError(f"device '{name}' names power mode '{at_mode}' but --power-mode is '{pm}'; give one of them")
    return base.strip(), at_mode or pm


def _keys(m: PowerMode) -> list[str]:
    return [m.name, *m.aliases, *([m.nvpmodel_name] if m.nvpmodel_name else [])]


def find_mode(prof: HardwareProfile, mode: str) -> PowerMode:
    """The mode called ``mode`` (its name, an alias or its nvpmodel name; case-insensitive)."""
    want = mode.strip().lower()
    for m in prof.power_modes:
        if want in (k.lower() for k in _keys(m)):
            return m
    names = prof.mode_names
    if not names:
        raise UsageError(f"device '{prof.name}' has no power modes; drop --power-mode (and '@{mode}')")
    keys = {k.lower(): m.name for m in prof.power_modes for k in _keys(m)}
    close = sorted({keys[k] for k in difflib.get_close_matches(want, list(keys), n=3, cutoff=0.4)})
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return _raise(
        f"unknown power mode '{mode}' for {prof.name}{hint}; its modes are: {', '.join(names)} "
        f"(default {default_mode_name(prof)}); see `compress devices {prof.name}`"
    )


def _raise(msg: str) -> NoReturn:
    raise UsageError(msg)


def default_mode_name(prof: HardwareProfile) -> str | None:
    if not prof.power_modes:
        return None
    return prof.default_power_mode or prof.power_modes[0].name


def apply_power_mode(prof: HardwareProfile, mode: str | None) -> HardwareProfile:
    """``prof`` at ``mode`` (default: its ``default_power_mode``): the mode's figures replace the spec's.

    A precision whose peak the mode does not list is scaled from the base peak by the ratio of GPU
    throughput (TPCs x clock) when both are known, and marked derived; otherwise the base figure
    is kept and marked unconfirmed for this mode (the estimate then says so).
    """
    if not prof.power_modes:
        if mode:
            find_mode(prof, mode)  # raises: the device has no modes
        return prof
    m = find_mode(prof, mode or default_mode_name(prof) or "")
    if prof.spec is None:
        return prof.model_copy(update={"power_mode": m.name})
    from compress.hardware.figure import Figure

    spec = prof.spec
    base = find_mode(prof, default_mode_name(prof) or m.name)
    peak: dict[str, Figure] = {}
    for prec, fig in spec.peak.items():
        if prec in m.peak:
            peak[prec] = m.peak[prec]
            continue
        ratio = _throughput(m)
        ratio_base = _throughput(base)
        if m is base:
            peak[prec] = fig
        elif ratio and ratio_base:
            peak[prec] = Figure(
                value=fig.value * ratio / ratio_base,
                unit=fig.unit,
                source=f"{fig.source}; scaled to {m.name} by GPU TPCs x clock",
                note="derived",
                unconfirmed=fig.unconfirmed or _unconf(m.gpu_clock_mhz) or _unconf(base.gpu_clock_mhz),
            )
        else:
            peak[prec] = fig.model_copy(
                update={"unconfirmed": True, "source": f"{fig.source} (figure of {base.name}; {m.name} lists none)"}
            )
    upd: dict[str, Any] = {"peak": peak}
    if m.memory_bandwidth is not None:
        upd["memory_bandwidth"] = m.memory_bandwidth
    if m.gpu_clock_mhz is not None:
        c = m.gpu_clock_mhz
        upd["clock_ghz"] = Figure(
            value=c.value / 1000.0, unit="GHz", source=c.source, unconfirmed=c.unconfirmed, note=c.note
        )
    return prof.model_copy(update={"spec": spec.model_copy(update=upd), "power_mode": m.name})


def _unconf(fig: Any) -> bool:
    return bool(fig is not None and fig.unconfirmed)


def _throughput(m: PowerMode) -> float | None:
    if m.gpu_clock_mhz is None:
        return None
    return m.gpu_clock_mhz.value * (m.gpu_tpcs.value if m.gpu_tpcs is not None else 1.0)


def current_mode(prof: HardwareProfile) -> PowerMode | None:
    """The :class:`PowerMode` a resolved profile is at (None for devices without modes)."""
    if not prof.power_modes:
        return None
    return find_mode(prof, prof.power_mode or default_mode_name(prof) or "")


def mode_label(prof: HardwareProfile) -> str | None:
    """``"MAXN (default)"`` / ``"30W"``: how every output names the mode; None without modes."""
    m = current_mode(prof)
    if m is None:
        return None
    return f"{m.name} (default)" if m.name == default_mode_name(prof) else m.name


def with_mode(device: str, power_mode: str | None) -> str:
    """``device`` with ``@power_mode`` appended (CLI plumbing: one string carries both)."""
    base, mode = split_device(device, power_mode)
    return f"{base}@{mode}" if mode else base


def clock_figure(prof: HardwareProfile) -> tuple[float | None, bool]:
    """(GPU clock in Hz at the profile's mode, unconfirmed?)."""
    if prof.spec is None or prof.spec.clock_ghz is None:
        return None, True
    return prof.spec.clock_ghz.value * 1e9, prof.spec.clock_ghz.unconfirmed


def dla_peak(prof: HardwareProfile, precision: str) -> Any:
    """Per-core DLA peak (a Figure) at the profile's mode, or None when the device has no DLA."""
    if prof.dla is None or precision not in prof.dla.precisions:
        return None
    m = current_mode(prof)
    if m is not None and precision in m.dla_peak:
        return m.dla_peak[precision]
    return prof.dla.peak.get(precision)


# ---- the board's state ---------------------------------------------------------------------------


def parse_nvpmodel(text: str | None) -> tuple[str, int | None] | None:
    """``nvpmodel -q`` output (``NV Power Mode: MAXN`` then the id) -> (name, id)."""
    if not text:
        return None
    m = re.search(r"NV Power Mode\s*:\s*(\S+)", text)
    if not m:
        return None
    rest = text[m.end() :].split()
    mid = int(rest[0]) if rest and rest[0].isdigit() else None
    return m.group(1), mid


def parse_jetson_clocks(text: str | None) -> dict[str, float]:
    """GPU and EMC clocks (MHz) from ``jetson_clocks --show`` (``GPU MinFreq=... MaxFreq=... CurrentFreq=...``)."""
    out: dict[str, float] = {}
    for line in (text or "").splitlines():
        m = re.match(r"\s*(GPU|EMC)\b.*?MaxFreq=(\d+).*?CurrentFreq=(\d+)", line)
        if m:
            out[f"{m.group(1).lower()}_max_mhz"] = int(m.group(2)) / 1e6
            out[f"{m.group(1).lower()}_current_mhz"] = int(m.group(3)) / 1e6
    return out


def board_mode(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """The mode a device-state snapshot (``compress.bench.device_state``) shows, or None off Jetson."""
    jet = (state or {}).get("jetson") if isinstance(state, dict) else None
    if not jet:
        return None
    nv = parse_nvpmodel(jet.get("nvpmodel"))
    return {
        "nvpmodel": nv[0] if nv else None,
        "nvpmodel_id": nv[1] if nv else None,
        "clocks": parse_jetson_clocks(jet.get("jetson_clocks")),
    }


def mode_matches(prof: HardwareProfile, nvpmodel_name: str | None, nvpmodel_id: int | None = None) -> bool | None:
    """Whether the board's nvpmodel mode is the profile's mode (None: cannot tell)."""
    m = current_mode(prof)
    if m is None or nvpmodel_name is None:
        return None
    if nvpmodel_name.lower() in (k.lower() for k in _keys(m)):
        return True
    return False


def mode_mismatch(prof: HardwareProfile, state: dict[str, Any] | None) -> str | None:
    """A one-line warning when the board in ``state`` is not in the profile's mode (None when it is,
    or when the state shows no Jetson)."""
    bm = board_mode(state)
    if bm is None or prof.power_mode is None:
        return None
    ok = mode_matches(prof, bm["nvpmodel"], bm["nvpmodel_id"])
    if ok is not False:
        return None
    m = current_mode(prof)
    how = (
        f"sudo nvpmodel -m {m.nvpmodel_id}"
        if m is not None and m.nvpmodel_id is not None
        else "a custom nvpmodel mode with these clocks"
    )
    return (
        f"the board is in nvpmodel mode '{bm['nvpmodel']}', not {prof.name}'s '{prof.power_mode}' asked for: "
        f"switch it with `{how}` (then `sudo jetson_clocks`), or ask for --power-mode matching the board"
    )


# ---- measured tables -------------------------------------------------------------------------------


def recorded_mode(meta: Any) -> str | None:
    """The power mode a latency table records: ``meta.power_mode`` (asked for), else the board's
    ``nvpmodel -q`` in ``meta.host``."""
    if getattr(meta, "power_mode", None):
        return str(meta.power_mode)
    bm = board_mode(getattr(meta, "host", None))
    return bm["nvpmodel"] if bm else None


def check_table_mode(prof: HardwareProfile, meta: Any, path: Any) -> None:
    """Refuse a table measured in another power mode than ``prof``'s (UsageError naming the fix)."""
    if prof.power_mode is None:
        return
    rec = recorded_mode(meta)
    board = board_mode(getattr(meta, "host", None))
    for name in [rec, board["nvpmodel"] if board else None]:
        if name and mode_matches(prof, name) is False:
            m = current_mode(prof)
            how = (
                f" (set the board with `sudo nvpmodel -m {m.nvpmodel_id}`)"
                if m is not None and m.nvpmodel_id is not None
                else ""
            )
            raise UsageError(
                f"latency table {path} was measured in power mode '{name}', not {prof.name}'s "
                f"'{prof.power_mode}' asked for; measure this mode with `compress profile --device "
                f"{prof.name} --power-mode {prof.power_mode} --remote user@host`{how}, or ask for "
                f"--power-mode {name}"
            )
