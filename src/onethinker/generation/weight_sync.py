"""The policy's weights in chunks, for pushing into a rollout engine after an optimizer step.

``weight_chunks(model, chunk_bytes)`` walks the model block by block (``weight_units``: a transformer
block's parameters stay together) and yields lists of ``(name, tensor)`` holding at most ``chunk_bytes``
each (one larger block makes its own chunk). Names
are the Hugging Face checkpoint names (``model.language_model.layers.0.self_attn.q_proj.weight``), which is
what vLLM's ``load_weights`` maps onto its own (fused) layout. A parameter shared by two modules (tied
embeddings) comes once.

Under DeepSpeed ZeRO-3 every rank holds a shard of each parameter: a chunk's parameters are gathered with
``deepspeed.zero.GatheredParameters`` (read-only, on every rank: a collective, so all ranks walk the same
chunks in the same order) just before the chunk is yielded, and released when the consumer asks for the
next one, so at most one chunk is ever whole in memory. Other set-ups (plain PyTorch, ZeRO-1/2, whose
parameters are whole on every rank) yield the tensors as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def is_zero3_partitioned(param: torch.nn.Parameter) -> bool:
    """A parameter partitioned by DeepSpeed ZeRO-3 (it carries ``ds_id``; its local ``numel`` is 0)."""
    return hasattr(param, "ds_id")


def full_nbytes(param: torch.nn.Parameter) -> int:
    numel = int(getattr(param, "ds_numel", param.numel()))
    return numel * param.element_size()


def _gathered(params: list[torch.nn.Parameter]):
    if not any(is_zero3_partitioned(p) for p in params):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def weight_units(model: torch.nn.Module) -> list[list[tuple[str, torch.nn.Parameter]]]:
    """The model's parameters in the groups that must travel together, in registration order: each item
    of a ``ModuleList`` (a transformer block: vLLM fuses its q/k/v and gate/up projections into one layer,
    which must receive all its parts in one push) with everything below it, and each other module's own
    parameters. A parameter shared by two modules (tied embeddings) comes once."""
    names = dict(model.named_modules())
    units: list[list[tuple[str, torch.nn.Parameter]]] = []
    covered: set[int] = set()
    seen: set[int] = set()

    def take(pairs) -> None:
        unit = []
        for name, p in pairs:
            if id(p) not in seen:
                seen.add(id(p))
                unit.append((name, p))
        if unit:
            units.append(unit)

    for name, module in names.items():
        if id(module) in covered or isinstance(module, torch.nn.ModuleList):
            continue
        parent = names.get(name.rpartition(".")[0]) if name else None
        if isinstance(parent, torch.nn.ModuleList):
            covered.update(id(m) for m in module.modules())
            take(module.named_parameters(prefix=name))
        else:
            take((f"{name}.{n}" if name else n, p) for n, p in module.named_parameters(recurse=False))
    return units


def plan_chunks(
    model: torch.nn.Module, chunk_bytes: int, trainable_only: bool = False
) -> list[list[tuple[str, torch.nn.Parameter]]]:
    """Group ``weight_units`` into chunks of at most ``chunk_bytes`` (full, unsharded sizes); a unit is never
    split, so a unit larger than the budget makes a chunk of its own. ``trainable_only`` keeps the units
    holding at least one trainable parameter (whole: a frozen part of a fused layer is pushed with it)."""
    chunks: list[list[tuple[str, torch.nn.Parameter]]] = []
    current: list[tuple[str, torch.nn.Parameter]] = []
    size = 0
    for unit in weight_units(model):
        if trainable_only and not any(p.requires_grad for _, p in unit):
            continue
        unit_size = sum(full_nbytes(p) for _, p in unit)
        if current and size + unit_size > chunk_bytes:
            chunks.append(current)
            current, size = [], 0
        current.extend(unit)
        size += unit_size
    if current:
        chunks.append(current)
    return chunks


def weight_chunks(
    model: torch.nn.Module, chunk_bytes: int = 512 << 20, trainable_only: bool = False
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Yield ``[(name, full tensor), ...]`` chunks of the model's parameters (see the module docstring).

    Whole parameters are the parameters' own storage (no copy); gathered ZeRO-3 parameters are copied out
    of the gathered buffer before it is released, so a consumer may hold a chunk's tensors (vLLM's reload
    buffers a layer's weights until all of them have arrived).
    """
    for chunk in plan_chunks(model, chunk_bytes, trainable_only):
        params = [p for _, p in chunk]
        with _gathered(params), torch.no_grad():
            yield [(name, p.data.clone() if is_zero3_partitioned(p) else p.data) for name, p in chunk]


def iter_weights(
    model: torch.nn.Module, chunk_bytes: int = 512 << 20, trainable_only: bool = False
) -> Iterator[tuple[str, torch.Tensor]]:
    """``weight_chunks`` flattened: one ``(name, tensor)`` at a time, gathering a chunk when it is reached."""
    for chunk in weight_chunks(model, chunk_bytes, trainable_only):
        yield from chunk
