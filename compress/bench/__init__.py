"""``compress bench``: on-device latency benchmarks, locally or over SSH, with device state.

Kept import-free: ``compress.bench.device_state`` and ``compress.bench.vendor`` are shipped to
remote devices with the agent and must import with the standard library alone. The public
function is :func:`compress.bench.api.bench`.
"""
