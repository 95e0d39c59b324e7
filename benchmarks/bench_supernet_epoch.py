"""Estimated time of one full-model (max subnet) training epoch over 55k Fashion-MNIST-sized images.

Times forward + backward + SGD step of the supernet with its max config active, batch 128, on
random 1x32x32 inputs (the cost does not depend on the pixel values), with ``--threads`` torch
threads, and extrapolates to 55,000 images. Prints the load average so that busy-machine numbers
can be recognised as such.

    .venv/bin/python benchmarks/bench_supernet_epoch.py [--threads 2] [--steps 8]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from compress.supernet import build_supernet


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--resolution", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"load average before: {os.getloadavg()}")
    for fam in ("mbv3-small-input", "convnext-small-input"):
        net = build_supernet(fam).train()
        net.set_active(net.space.config(**{**net.max_config().to_dict(), "resolution": args.resolution}))
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(args.batch, net.space.in_channels, args.resolution, args.resolution)
        y = torch.randint(0, net.space.num_classes, (args.batch,))
        times, cpu = [], []
        for i in range(args.steps + 2):
            t0, c0 = time.perf_counter(), time.process_time()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        best, med = min(times), sorted(times)[len(times) // 2]
        cpu_best = min(cpu)
        per_epoch = 55000 / args.batch
        print(
            f"{fam:22s} step(b={args.batch}) wall min {best * 1e3:.0f} ms, median {med * 1e3:.0f} ms, "
            f"process CPU min {cpu_best * 1e3:.0f} ms -> epoch of 55k images ~ {best * per_epoch / 60:.1f} min "
            f"(wall, min), {med * per_epoch / 60:.1f} min (wall, median), "
            f"{cpu_best * per_epoch / 60 / args.threads:.1f} min (CPU time / {args.threads} threads, ideal scaling)"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
