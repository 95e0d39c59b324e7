"""Run every benchmark script in sequence (``make bench``); results land in benchmarks/results/.

Each script prints side-by-side ratios from one run and writes JSON/Markdown results. Run them on a
quiet machine: they re-time a reference model to control for drift, but a machine busy with other
work makes every timing noisy (the scripts say so in their output when drift was uncontrolled).

    python benchmarks/run_all.py            # full runs (hours on 2 cores)
    python benchmarks/run_all.py --quick    # smoke runs: check the harnesses, numbers are meaningless
    python benchmarks/run_all.py --only latency search
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {  # name -> (script, takes --quick)
    "supernet": ("bench_supernet_latency_range.py", False),
    "latency": ("bench_latency.py", True),
    "search": ("bench_search.py", True),
    "vendor": ("bench_vendor_tools.py", True),
    "updp": ("bench_updp.py", True),
    "updp-proxy": ("bench_updp_proxy.py", True),
    "updp-schedule": ("bench_updp_schedule.py", True),
    "updp-ceiling": ("bench_updp_ceiling.py", False),
    "updp-families": ("bench_updp_families.py", False),
    "ftwt": ("bench_ftwt.py", True),
    "train": ("bench_train_recipes.py", True),
    "ist": ("bench_ist.py", True),
    "quantize-tables": ("bench_quantize_tables.py", True),
    "quantize-updp": ("bench_quantize_updp.py", True),
    "quantize": ("bench_quantize.py", False),
    "standalone": ("bench_standalone.py", True),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke-test every harness with tiny settings")
    ap.add_argument("--only", nargs="+", choices=sorted(SCRIPTS), help="run only these benchmarks")
    args = ap.parse_args()
    names = args.only or list(SCRIPTS)
    status: dict[str, tuple[int, float]] = {}
    for name in names:
        script, takes_quick = SCRIPTS[name]
        cmd = [sys.executable, str(HERE / script)] + (["--quick"] if args.quick and takes_quick else [])
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=HERE.parent, check=False).returncode
        status[name] = (rc, time.perf_counter() - t0)
    print("\n=== summary")
    for name, (rc, secs) in status.items():
        print(f"{name:10s} {'ok' if rc == 0 else f'FAILED (exit {rc})':18s} {secs / 60:6.1f} min")
    return 0 if all(rc == 0 for rc, _ in status.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
