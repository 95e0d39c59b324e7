"""UPDP block discovery from the traced graph (torch.fx), for any model a user brings.

A module is a *chain* when its traced forward is, from its one input ``x`` to its one output::

    x → op → op → … → op  [→ + x]  [→ act]

where every ``op`` is one of: a conv (``nn.Conv2d``) or a linear over channels (``nn.Linear`` in a
channels-last stretch), a norm that is affine in eval mode (BatchNorm, timm's BatchNormAct), a norm
swapped progressively for a BatchNorm (LayerNorm over channels, ``LayerNorm2d``, ``GroupNorm``: the
swap UPDP already does for ConvNeXt/ViT; its training-time cost is one extra BatchNorm computed next
to the norm in every pruned block while λ < 1), an elementwise activation (module or function),
a squeeze-excitation gate (``x · g(pool(x))``, whatever ``g`` is), a per-channel scale by a parameter
(layer scale), and the layout ops around channels-last stretches (``permute``), dropout/drop-path
and identities (no-ops in eval mode). The chain may be closed by a residual add with the block's
own input (identity shortcut) or with a projection of it (convs and BatchNorms whose only padded
conv is the first: ResNet/RegNet downsample shortcuts, folded into the merged kernel), and one
activation after the add (ResNet's ReLU).

Every chain becomes the same :class:`~compress.prune.updp.linearize.PrunedChain` the per-class
adapters built, so the algebra, progressive λ training, merge forms and latency decisions are
reused unchanged. Each module is traced on its own (leaf modules are the ops above plus every
``torch.nn`` module), so one untraceable module elsewhere does not hide the blocks that trace; a
module that does not trace is reported with the innermost module torch.fx failed in.

Limits (each is reported as a skip reason, never silently): shortcuts with a pool or an activation
(ResNet-D's pool-and-conv), branches joined by an add or a concat inside the block (other than
GhostNet's ghost module, which is one dense conv at λ = 1; un-folded RepVGG branches), attention,
squeeze-excitation before a padded conv, and chains written inline in a
parent's ``forward`` (UPDP replaces modules, so a chain must be one module's whole forward).
"""

from __future__ import annotations

import inspect
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from compress.prune.updp.linearize import (
    ActStep,
    BNStep,
    ConvStep,
    GhostConvStep,
    NormSwapStep,
    PartialActStep,
    PartialBNStep,
    PrunedChain,
    ScaleStep,
    SEStep,
    Unsupported,
)

# ---- what the graph may contain ------------------------------------------------------------------

ACT_CLASSES = {
    "ReLU",
    "ReLU6",
    "GELU",
    "GELUTanh",
    "QuickGELU",
    "SiLU",
    "Swish",
    "SwishMe",
    "Hardswish",
    "HardSwish",
    "HardSwishMe",
    "Hardsigmoid",
    "HardSigmoid",
    "HardSigmoidMe",
    "LeakyReLU",
    "ELU",
    "CELU",
    "SELU",
    "Mish",
    "MishMe",
    "HardMish",
    "Tanh",
    "Sigmoid",
    "PReLU",
    "Softplus",
    "GeLU",
}
ACT_FUNCTIONS = {
    F.relu,
    torch.relu,
    F.relu6,
    F.gelu,
    F.silu,
    F.hardswish,
    F.hardsigmoid,
    F.leaky_relu,
    F.elu,
    F.mish,
    F.selu,
    F.celu,
    F.softplus,
    torch.sigmoid,
    torch.tanh,
    F.sigmoid,
    F.tanh,
}
ACT_METHODS = {"relu", "sigmoid", "tanh", "relu_", "sigmoid_", "tanh_"}
PASS_METHODS = {"contiguous", "clone"}
ADD = {operator.add, operator.iadd, torch.add}
MUL = {operator.mul, operator.imul, torch.mul}


def _is_pass_module(m: nn.Module) -> bool:
    """Identity, dropout and drop-path modules: no-ops in eval mode, never part of a merge."""
    name = type(m).__name__
    return isinstance(m, (nn.Identity, nn.Dropout, nn.Dropout2d)) or name == "Identity" or "Drop" in name


def _is_act_module(m: nn.Module) -> bool:
    return type(m).__name__ in ACT_CLASSES


def _is_leaf(m: nn.Module) -> bool:
    return (
        isinstance(m, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm))
        or _is_act_module(m)
        or _is_pass_module(m)
    )


# ---- tracing -------------------------------------------------------------------------------------


class Untraceable(Unsupported):
    """torch.fx cannot trace the module; ``module`` names the innermost module it failed in."""

    def __init__(self, msg: str, module: str) -> None:
        super().__init__(msg)
        self.module = module


class _Tracer(fx.Tracer):
    """Leaves: the chain ops above and every torch.nn module; remembers which module failed."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _is_leaf(m) or super().is_leaf_module(m, qualname)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as err:
            if not hasattr(err, "_updp_module"):
                try:
                    err._updp_module = self.path_of_module(m)  # type: ignore[attr-defined]
                except Exception:
                    err._updp_module = ""  # type: ignore[attr-defined]
            raise


def trace(module: nn.Module, name: str = "") -> fx.Graph:
    """The module's forward as an fx graph (first argument symbolic, the others at their defaults)."""
    params = list(inspect.signature(module.forward).parameters.values())
    concrete: dict[str, Any] = {}
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            raise Unsupported(f"forward takes more than one input ({p.name})")
        concrete[p.name] = p.default
    try:
        return _Tracer().trace(module, concrete_args=concrete or None)
    except Unsupported:
        raise
    except Exception as err:
        inner = getattr(err, "_updp_module", "")
        where = ".".join(s for s in (name, inner) if s) or type(module).__name__
        cls = type(module.get_submodule(inner)).__name__ if inner else type(module).__name__
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise Untraceable(f"torch.fx cannot trace {where} ({cls}): {first}", where) from None


# ---- steps only the graph path needs -------------------------------------------------------------


class FnAct(nn.Module):
    """An activation written as a function call (``F.relu(x)``, ``x.sigmoid()``) as a module."""

    def __init__(self, fn: Any, kwargs: dict[str, Any], method: str | None = None) -> None:
        super().__init__()
        self.fn, self.kwargs, self.method = fn, dict(kwargs), method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method:
            return getattr(x, self.method.rstrip("_"))(**self.kwargs)
        return self.fn(x, **{k: v for k, v in self.kwargs.items() if k != "inplace"})


class GraphSEStep(SEStep):
    """Squeeze-excitation found in the graph: ``gate`` is the traced sub-graph ``x → g(pool(x))``."""

    def __init__(self, gate: fx.GraphModule) -> None:
        nn.Module.__init__(self)
        self.gate_fn, self.kind = gate, "graph"

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_fn(x)


class GraphNormSwapStep(NormSwapStep):
    """A norm that is not affine in eval mode (LayerNorm over channels, LayerNorm2d, GroupNorm),
    fading into a new BatchNorm2d exactly as :class:`NormSwapStep` does; the original norm runs as
    the module it is (``channels_last``: it normalised a channels-last tensor)."""

    def __init__(self, norm: nn.Module, channels: int, *, channels_last: bool) -> None:
        super().__init__(norm, channels)
        self.channels_last = channels_last

    def layer_norm(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.ln(x)


def bn_act_steps(bn: nn.Module) -> list[nn.Module]:
    """BatchNorm (timm BatchNormAct2d: plus its activation) as steps."""
    if not isinstance(bn, nn.BatchNorm2d):
        raise Unsupported(f"norm {type(bn).__name__} is not a BatchNorm2d")
    steps: list[nn.Module] = [BNStep(bn)]
    drop = getattr(bn, "drop", None)
    if drop is not None and not _is_pass_module(drop):
        raise Unsupported("dropout inside a norm-act layer")
    act = getattr(bn, "act", None)
    if act is not None and not _is_pass_module(act):
        if not _is_act_module(act):
            raise Unsupported(f"activation {type(act).__name__} inside {type(bn).__name__}")
        steps.append(ActStep(act))
    return steps


# ---- the chain walker ----------------------------------------------------------------------------


def _describe(n: fx.Node, module: nn.Module) -> str:
    if n.op == "call_module":
        return f"{type(module.get_submodule(n.target)).__name__} ({n.target})"
    t = n.target
    where = ""
    stack = n.meta.get("nn_module_stack") or {}
    if stack:  # the module whose forward wrote the op (torch.fx records it): "dim() in bn1 (EvoNorm2dS0)"
        path, cls = list(stack.values())[-1]
        where = f" in {path} ({getattr(cls, '__name__', cls)})" if path else ""
    return f"{getattr(t, '__name__', t)}(){where}"


def _ignorable(n: fx.Node) -> bool:
    return n.op == "call_function" and getattr(n.target, "__name__", "") in ("_assert_is_none", "_assert")


def _users(n: fx.Node) -> list[fx.Node]:
    return [u for u in n.users if not _ignorable(u)]


def _permute_dims(n: fx.Node) -> tuple[int, ...] | None:
    if (n.op == "call_method" and n.target == "permute") or (n.op == "call_function" and n.target is torch.permute):
        dims = n.args[1:] if len(n.args) > 2 else (n.args[1] if len(n.args) > 1 else n.kwargs.get("dims"))
        return tuple(int(d) for d in dims) if dims is not None else None
    return None


def _param_of(n: Any, module: nn.Module) -> torch.Tensor | None:
    """The parameter/buffer a node reads, through reshape/view/unsqueeze/squeeze."""
    while isinstance(n, fx.Node):
        if n.op == "get_attr":
            obj: Any = module
            for part in str(n.target).split("."):
                obj = getattr(obj, part)
            return obj if isinstance(obj, torch.Tensor) else None
        if n.op == "call_method" and n.target in ("reshape", "view", "unsqueeze", "squeeze", "flatten"):
            n = n.args[0]
            continue
        return None
    return None


def _is_pool(n: fx.Node, src: fx.Node, module: nn.Module) -> bool:
    """A global spatial average of ``src`` (the squeeze of a squeeze-excitation)."""
    if not n.args or n.args[0] is not src:
        return False
    if n.op == "call_method" and n.target == "mean":
        dims = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
        dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
        return sorted(d % 4 if isinstance(d, int) else d for d in dims) == [2, 3]
    if n.op == "call_function" and n.target is F.adaptive_avg_pool2d:
        size = n.args[1] if len(n.args) > 1 else n.kwargs.get("output_size")
        return size in (1, (1, 1), [1, 1])
    if n.op == "call_module":
        m = module.get_submodule(n.target)
        return isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1))
    return False


def _ancestors(n: fx.Node, stop: fx.Node) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    todo = [n]
    while todo:
        k = todo.pop()
        if k in seen or k is stop:
            continue
        seen.add(k)
        todo.extend(a for a in k.all_input_nodes)
    return seen


def _se_step(
    cur: fx.Node, users: list[fx.Node], graph: fx.Graph, module: nn.Module
) -> tuple[nn.Module, fx.Node, set[fx.Node]] | None:
    """``cur · g(pool(cur))``: the gate as a small GraphModule (sharing the block's parameters)."""
    muls = [
        u
        for u in users
        if u.op in ("call_function", "call_method") and (u.target in MUL or u.target in ("mul", "mul_"))
    ]
    if len(muls) != 1:
        return None
    mul = muls[0]
    others = [a for a in mul.args if a is not cur]
    if len(mul.args) != 2 or len(others) != 1 or not isinstance(others[0], fx.Node):
        return None
    g = others[0]
    body = _ancestors(g, cur)
    pools = [k for k in body if _is_pool(k, cur, module)]
    inputs = {a for k in body for a in k.all_input_nodes if a not in body}
    if len(pools) != 1 or inputs - {cur} or any(k.op == "placeholder" for k in body):
        return None
    rest = [u for u in users if u is not mul]
    if rest != [pools[0]] and set(rest) != {pools[0]}:
        return None
    sub = fx.Graph()
    env = {cur: sub.placeholder("x")}
    for k in graph.nodes:
        if k in body:
            env[k] = sub.node_copy(k, lambda a: env[a])
    sub.output(env[g])
    return GraphSEStep(fx.GraphModule(module, sub)), mul, body


def _alias(n: Any, module: nn.Module) -> Any:
    """Follow no-op nodes (identities, dropout, contiguous) back to the tensor they pass on."""
    while isinstance(n, fx.Node):
        if n.op == "call_module" and _is_pass_module(module.get_submodule(n.target)):
            n = n.args[0]
        elif n.op == "call_method" and n.target in PASS_METHODS:
            n = n.args[0]
        elif n.op == "call_function" and n.target is F.dropout:
            n = n.args[0]
        else:
            return n
    return n


def _act_node(n: fx.Node, module: nn.Module) -> nn.Module | None:
    """The activation a node applies (module, function or method call), else None."""
    if n.op == "call_module":
        m = module.get_submodule(n.target)
        return m if _is_act_module(m) else None
    if len(n.args) != 1 or not isinstance(n.args[0], fx.Node):
        return None
    if n.op == "call_function" and n.target in ACT_FUNCTIONS:
        return FnAct(n.target, dict(n.kwargs))
    if n.op == "call_method" and n.target in ACT_METHODS:
        return FnAct(None, dict(n.kwargs), method=str(n.target))
    return None


def chain_from_module(module: nn.Module, name: str) -> PrunedChain:
    """``module`` as a :class:`PrunedChain` from its traced graph; raises ``Unsupported`` (why)."""
    graph = trace(module, name)
    nodes = [n for n in graph.nodes if not _ignorable(n)]
    phs = [n for n in nodes if n.op == "placeholder"]
    x = phs[0]
    outs = [n for n in nodes if n.op == "output"]
    out = outs[0].args[0]
    if not isinstance(out, fx.Node):
        raise Unsupported("the block returns more than one tensor")
    out = _alias(out, module)

    # -- the end: [+ x] [→ act]
    post_act, post_act_node = None, None
    residual_add = None
    shortcut: list[nn.Module] | None = None
    short_set: set[fx.Node] = set()
    act = _act_node(out, module)
    if act is not None and isinstance(out.args[0], fx.Node):
        inner = _alias(out.args[0], module)
        if inner.op in ("call_function", "call_method") and (inner.target in ADD or inner.target in ("add", "add_")):
            post_act, post_act_node, out = act, out, inner
    end = out
    if out.op in ("call_function", "call_method") and (out.target in ADD or out.target in ("add", "add_")):
        args = [a for a in out.args if isinstance(a, fx.Node)]
        if len(args) != 2:
            raise Unsupported("an add with a constant closes the block")
        a, b = (_alias(v, module) for v in args)
        if b is x and a is not x:
            residual_add, end, short_arg = out, args[0], args[1]
        elif a is x and b is not x:
            residual_add, end, short_arg = out, args[1], args[0]
        else:
            foreign = _first_foreign(nodes, module)
            if foreign is not None:
                raise Unsupported(f"op {_describe(foreign, module)} is not conv/linear, norm, activation, SE or scale")
            parsed = [(i, _shortcut_steps(args[i], x, out, module)) for i in (0, 1)]
            parsed = [(i, sc) for i, sc in parsed if sc is not None]
            if not parsed:
                short = args[1] if len(_ancestors(args[1], x)) <= len(_ancestors(args[0], x)) else args[0]
                raise Unsupported(
                    f"downsample or projection shortcut that is not a conv/BN chain ({_describe(short, module)}), "
                    "or two branches joined by an add"
                )
            i, (shortcut, short_set) = min(parsed, key=lambda p: len(p[1][1]))
            residual_add, end, short_arg = out, args[1 - i], args[i]
    if residual_add is None:
        post_act, post_act_node = None, None
        end = outs[0].args[0]

    # -- walk the main path from x to end
    steps: list[nn.Module] = []
    visited: set[fx.Node] = {x, *outs, *short_set}
    short_nodes: set[fx.Node] = set()
    if residual_add is not None:
        visited.add(residual_add)
        # no-ops on the shortcut only (``self.shortcut(x)`` as nn.Identity), walked back from the add
        k, nxt = short_arg, residual_add
        while k is not x and set(_users(k)) <= {nxt}:
            short_nodes.add(k)
            k, nxt = k.args[0], k
        if shortcut is not None and not short_set <= short_nodes:
            raise Unsupported("the projection shortcut shares ops with the main branch")
        if post_act_node is not None:
            visited.add(post_act_node)
    layout = "nchw"
    channels: int | None = None
    cur = x
    while cur is not end:
        us = [u for u in _users(cur) if u is not residual_add and u.op != "output"]
        us = [u for u in us if u not in short_nodes]
        if len(us) == 2:
            ghost = _ghost_steps(cur, us, module) if layout == "nchw" else None
            if ghost is not None:
                new_steps, cur, body, channels = ghost
                steps.extend(new_steps)
                visited |= body
                continue
            se = _se_step(cur, us, graph, module)
            if se is None:
                raise Unsupported(
                    f"a branch after {_describe(cur, module) if cur is not x else 'the input'} "
                    f"({', '.join(_describe(u, module) for u in us)})"
                )
            if layout != "nchw":
                raise Unsupported("squeeze-excitation on a channels-last tensor")
            step, cur, body = se
            steps.append(step)
            visited |= body | {cur}
            continue
        if len(us) != 1:
            what = _describe(cur, module) if cur is not x else "the input"
            raise Unsupported(
                f"{len(us)} ops read the output of {what} (a multi-branch op such as attention)"
                if us
                else f"nothing on the main path reads {what}"
            )
        u = us[0]
        visited.add(u)
        if u.args and u.args[0] is not cur and not (u.target in MUL or u.target in ("mul", "mul_")):
            raise Unsupported(f"{_describe(u, module)} takes the chain as a later argument")
        new_steps, layout, channels = _op_steps(u, cur, module, layout, channels)
        steps.extend(new_steps)
        cur = u
    if layout != "nchw":
        raise Unsupported("the block ends channels-last")
    for n in nodes:
        if n not in visited and n.op not in ("get_attr", "placeholder") and not _is_const_path(n, visited, module):
            raise Unsupported(f"op {_describe(n, module)} outside the chain")
    chain = PrunedChain(
        steps,
        kind="chain",
        name=name,
        residual=residual_add is not None and shortcut is None,
        post_act=post_act,
        shortcut=shortcut,
    )
    chain.kind = infer_kind(chain)
    return chain


def _ghost_steps(cur: fx.Node, users: list[fx.Node], module: nn.Module):
    """GhostNet's ``cat([h, cheap(h)], 1)[:, :out]`` with ``cheap`` = depthwise conv → BN → [act]:
    one :class:`GhostConvStep` plus the cheap half's BN and activation on its channels only."""
    cats = [u for u in users if u.op == "call_function" and u.target is torch.cat]
    if len(cats) != 1:
        return None
    cat = cats[0]
    parts = cat.args[0] if cat.args else cat.kwargs.get("tensors")
    dim = cat.args[1] if len(cat.args) > 1 else cat.kwargs.get("dim", 0)
    if dim not in (1, -3) or not isinstance(parts, (list, tuple)) or len(parts) != 2 or parts[0] is not cur:
        return None
    mods: list[nn.Module] = []
    body: set[fx.Node] = {cat}
    k = next(u for u in users if u is not cat)
    while k is not parts[1]:
        if k.op != "call_module" or len(_users(k)) != 1:
            return None
        mods.append(module.get_submodule(k.target))
        body.add(k)
        k = _users(k)[0]
    if k.op != "call_module":
        return None
    mods.append(module.get_submodule(k.target))
    body.add(k)
    mods = [m for m in mods if not _is_pass_module(m)]
    if len(mods) < 2 or not isinstance(mods[0], nn.Conv2d) or not isinstance(mods[1], nn.BatchNorm2d):
        return None
    c = mods[0].in_channels
    out, end = 2 * c, cat
    us = _users(cat)
    if len(us) == 1 and us[0].op == "call_function" and us[0].target is operator.getitem:
        idx = us[0].args[1]
        if (
            isinstance(idx, tuple)
            and len(idx) >= 2
            and idx[0] == slice(None)
            and isinstance(idx[1], slice)
            and idx[1].start in (None, 0)
            and idx[1].step in (None, 1)
            and all(i == slice(None) for i in idx[2:])
        ):
            out, end = min(2 * c, idx[1].stop if idx[1].stop is not None else 2 * c), us[0]
            body.add(end)
    try:
        steps: list[nn.Module] = [GhostConvStep(mods[0], out)]
        if out > c:
            bn = mods[1]
            steps.append(PartialBNStep(bn, start=c, total=out))
            acts = [getattr(bn, "act", None)] + mods[2:]
            for a in acts:
                if a is None or _is_pass_module(a):
                    continue
                if not _is_act_module(a):
                    return None
                steps.append(PartialActStep(a, start=c))
    except Unsupported:
        return None
    return steps, end, body, out


def _shortcut_steps(
    arg: Any, x: fx.Node, add: fx.Node, module: nn.Module
) -> tuple[list[nn.Module], set[fx.Node]] | None:
    """``arg`` as a projection shortcut from ``x``: a run of convs and BatchNorms (no activation),
    each read only by the next; its steps and nodes, or None."""
    steps: list[nn.Module] = []
    nodes: set[fx.Node] = set()
    k, nxt = arg, add
    while isinstance(k, fx.Node) and k is not x:
        if k.op != "call_module" or set(_users(k)) != {nxt} or not k.args:
            return None
        m = module.get_submodule(k.target)
        try:
            if isinstance(m, nn.Conv2d):
                steps.insert(0, ConvStep(m))
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                bn = bn_act_steps(m)
                if len(bn) != 1:
                    return None
                steps.insert(0, bn[0])
            elif not _is_pass_module(m):
                return None
        except Unsupported:
            return None
        nodes.add(k)
        k, nxt = k.args[0], k
    if k is not x or not any(isinstance(s, ConvStep) for s in steps):
        return None
    return steps, nodes


def _first_foreign(nodes: list[fx.Node], module: nn.Module) -> fx.Node | None:
    """The first node that no chain may contain (a norm written as raw ops, a pool, a concat...)."""
    for n in nodes:
        if n.op in ("placeholder", "output", "get_attr") or _param_of(n, module) is not None:
            continue
        if n.op == "call_module":
            m = module.get_submodule(n.target)
            if _is_leaf(m) and not isinstance(m, nn.modules.batchnorm._BatchNorm) or isinstance(m, nn.BatchNorm2d):
                continue
            if isinstance(m, nn.AdaptiveAvgPool2d):
                continue
            return n
        if _act_node(n, module) is not None or _permute_dims(n) is not None:
            continue
        t = n.target
        if t in ADD or t in MUL or t in ("add", "add_", "mul", "mul_", "mean") or t in PASS_METHODS:
            continue
        if t is F.adaptive_avg_pool2d or t is F.dropout or t is torch.cat or t is operator.getitem:
            continue
        return n
    return None


def _is_const_path(n: fx.Node, visited: set[fx.Node], module: nn.Module) -> bool:
    """Reshapes of parameters (a layer-scale ``gamma.reshape(1, -1, 1, 1)``) and no-ops on the shortcut."""
    if _param_of(n, module) is not None:
        return True
    return _alias(n, module) in visited


def _op_steps(u: fx.Node, cur: fx.Node, module: nn.Module, layout: str, channels: int | None):
    """Steps for one op on the main path; the layout (nchw / nhwc) after it and the channel count."""
    if u.op == "call_module":
        m = module.get_submodule(u.target)
        if _is_pass_module(m):
            return [], layout, channels
        if isinstance(m, nn.Conv2d):
            if layout != "nchw":
                raise Unsupported(f"conv {u.target} on a channels-last tensor")
            return [ConvStep(m)], layout, m.out_channels
        if isinstance(m, nn.Linear):
            if layout != "nhwc":
                raise Unsupported(f"linear {u.target} over the last axis of an NCHW map (not over channels)")
            return [ConvStep(m)], layout, m.out_features
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if layout != "nchw":
                raise Unsupported(f"BatchNorm {u.target} on a channels-last tensor")
            return bn_act_steps(m), layout, channels
        if isinstance(m, nn.LayerNorm):
            c = m.normalized_shape[-1] if len(m.normalized_shape) == 1 else None
            two_d = "2d" in type(m).__name__.lower()
            if c is None or (layout == "nchw") != two_d:
                raise Unsupported(f"LayerNorm {u.target} does not normalise over channels")
            if getattr(m, "weight", None) is None:
                raise Unsupported(f"LayerNorm {u.target} without an affine γ/β")
            return [GraphNormSwapStep(m, c, channels_last=layout == "nhwc")], layout, channels
        if isinstance(m, nn.GroupNorm):
            if layout != "nchw" or not m.affine:
                raise Unsupported(f"GroupNorm {u.target} on a channels-last tensor or without γ/β")
            return [GraphNormSwapStep(m, m.num_channels, channels_last=False)], layout, channels
        if _is_act_module(m):
            return [ActStep(m)], layout, channels
        raise Unsupported(f"{type(m).__name__} ({u.target}) is not conv/linear, norm, activation, SE or scale")
    act = _act_node(u, module)
    if act is not None:
        return [ActStep(act)], layout, channels
    if u.op == "call_method" and u.target in PASS_METHODS or (u.op == "call_function" and u.target is F.dropout):
        return [], layout, channels
    dims = _permute_dims(u)
    if dims is not None:
        if dims == (0, 2, 3, 1) and layout == "nchw":
            return [], "nhwc", channels
        if dims == (0, 3, 1, 2) and layout == "nhwc":
            return [], "nchw", channels
        raise Unsupported(f"permute{dims} (not an NCHW <-> NHWC switch)")
    if u.op in ("call_function", "call_method") and (u.target in MUL or u.target in ("mul", "mul_")):
        other = [a for a in u.args if a is not cur]
        p = _param_of(other[0], module) if len(other) == 1 else None
        if p is None or (channels is not None and p.numel() != channels) or p.numel() <= 1:
            raise Unsupported("a multiply that is not a per-channel scale by a parameter")
        if layout == "nchw" and p.dim() >= 2 and p.shape[-1] != 1 and p.numel() != 1:
            raise Unsupported("a scale that is not per channel")
        gamma = p if isinstance(p, nn.Parameter) else nn.Parameter(p.detach().clone(), requires_grad=False)
        return [ScaleStep(gamma)], layout, channels
    if u.op in ("call_function", "call_method") and (u.target in ADD or u.target in ("add", "add_")):
        raise Unsupported("an add inside the block (two branches, or a shortcut that is not the block's input)")
    if u.op == "call_function" and u.target is torch.cat:
        raise Unsupported("a channel concat inside the block (e.g. a Ghost module)")
    raise Unsupported(f"op {_describe(u, module)} is not conv/linear, norm, activation, SE or scale")


def infer_kind(chain: PrunedChain) -> str:
    """Name the chain like the per-class adapters did (the merge forms and tables key on it)."""
    convs = chain.convs
    ks = [c.k for c in convs]
    dw = [c.groups > 1 and c.groups == c.in_channels == c.out_channels for c in convs]
    convnext_like = any(isinstance(s, (ScaleStep, NormSwapStep)) for s in chain.steps)
    if (
        len(convs) == 3
        and dw[0]
        and ks[1] == ks[2] == 1
        and chain.residual
        and chain.post_act is None
        and convnext_like
    ):
        return "convnext"
    if chain.post_act is None and (
        (len(convs) == 3 and ks[0] == 1 and dw[1] and ks[2] == 1) or (len(convs) == 2 and dw[0] and ks[1] == 1)
    ):
        return "mbconv"
    if (
        (chain.residual or chain.shortcut is not None)
        and chain.post_act is not None
        and len(convs) == 2
        and not any(dw)
        and min(ks) > 1
    ):
        return "resnet_basic"
    if (
        (chain.residual or chain.shortcut is not None)
        and chain.post_act is not None
        and len(convs) == 3
        and ks[0] == ks[2] == 1
    ):
        return "resnet_bottleneck"
    return "chain"


# ---- RepVGG / MobileOne -------------------------------------------------------------------------


def fold_reparameterizable(model: nn.Module) -> list[str]:
    """Fold train-time branches (RepVGG, MobileOne...: the duck-typed ``reparameterize()`` timm uses)
    in place, outermost first; returns the folded modules' names. Needs eval mode (BN statistics)."""
    folded: list[str] = []
    for name, m in list(model.named_modules()):
        if any(name.startswith(f + ".") for f in folded) or not name:
            continue
        fn = getattr(m, "reparameterize", None)
        if callable(fn):
            with torch.no_grad():
                fn()
            folded.append(name)
    return folded


def has_train_branches(m: nn.Module) -> bool:
    return callable(getattr(m, "reparameterize", None)) and getattr(m, "reparam_conv", 1) is None
