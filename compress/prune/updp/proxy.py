"""Accuracy scores for block selection (UPDP stage 2).

* :func:`proxy_scorer` (default, cheap) [R]: −KL(unpruned ‖ masked) on held-out images, with the
  mask's blocks in pruned form at λ = 1 and all BatchNorm statistics re-estimated on calibration
  images; no training.
* :func:`supernet_scorer` (ALGORITHMS §1.5, ``selection="supernet"``): every candidate gets its
  pruned path; for ``steps`` iterations a random mask with exactly K blocks at λ = 1 (the others at
  λ = 0, i.e. the original block) is trained with CE + KD from the frozen unpruned model; a mask is
  then scored like the proxy, on that trained weight-sharing network. Our simplification [R]: the
  pruned and original paths share their BatchNorm layers too (BN is re-estimated per mask before
  scoring, which is what makes the shared statistics usable).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import torch
import torch.nn.functional as F

from compress.prune.updp.measure import logits, recalibrate_bn
from compress.prune.updp.surgery import insert_pruned, pruned_blocks


def _kl(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float(F.kl_div(F.log_softmax(out, 1), F.log_softmax(ref, 1), reduction="batchmean", log_target=True))


def proxy_scorer(module, teacher_logits, calib, val_images, *, recal_images: int = 256) -> Callable:
    def score(mask) -> float:
        m = copy.deepcopy(module)
        insert_pruned(m, list(mask), lam=1.0)
        recalibrate_bn(m, calib[:recal_images])
        return -_kl(logits(m, val_images), teacher_logits)

    return score


def _set_mask(chains: dict, mask) -> None:
    for name, p in chains.items():
        (p.chain if hasattr(p, "chain") else p).lam = 1.0 if name in mask else 0.0


def supernet_scorer(
    module,
    teacher,
    names: list[str],
    train_split,
    teacher_logits,
    calib,
    val_images,
    *,
    k: int,
    steps: int = 200,
    batch_size: int = 64,
    lr: float = 5e-4,
    seed: int = 0,
    recal_images: int = 256,
) -> Callable:
    """Train a weight-sharing network with random K-masks, then score masks on it (see module doc)."""
    from compress.data import Batches

    net = copy.deepcopy(module)
    insert_pruned(net, names, lam=0.0)
    chains = pruned_blocks(net)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)
    teacher.eval()
    step, epoch = 0, 0
    net.train()
    while step < steps:
        for x, y in Batches(train_split, batch_size=batch_size, seed=seed, epoch=epoch, drop_last=True):
            if step >= steps:
                break
            _set_mask(chains, rng.sample(names, min(k, len(names))))
            out = net(x)
            with torch.no_grad():
                t = teacher(x)
            loss = 0.5 * F.cross_entropy(out, y, label_smoothing=0.1) + 0.5 * F.kl_div(
                F.log_softmax(out, 1), F.log_softmax(t, 1), reduction="batchmean", log_target=True
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        epoch += 1
    net.eval()
    state = copy.deepcopy(net.state_dict())

    def score(mask) -> float:
        net.load_state_dict(state)
        _set_mask(chains, set(mask))
        recalibrate_bn(net, calib[:recal_images])
        return -_kl(logits(net, val_images), teacher_logits)

    return score
