"""Host-device synchronisations counted on the CPU: the operations that, on a CUDA device, make
the host wait for the GPU's queue to drain.

A CPU run cannot observe a sync (``torch.cuda.set_sync_debug_mode`` needs the GPU, see
benchmarks/gpu_check_workers.py), but it runs the same operations, so :func:`count_syncs` records
the ones that would sync:

- a tensor read on the host: ``aten._local_scalar_dense`` (``.item()``, ``bool()``/``if`` on a
  tensor, ``int()``/``float()``), ``aten.equal``, and the Python-level ``.tolist()``,
  ``.numpy()`` and ``.cpu()`` (which for a CPU tensor never reach the dispatcher);
- a result whose shape depends on the data: ``unique``, ``nonzero``, ``masked_select``,
  ``repeat_interleave`` without ``output_size``, ``bincount``, indexing with a boolean mask.

Each record names the operation and the innermost caller in rcdml (or the first outside torch).
Reads the optimizer does of its own step counters are left out: torch keeps those on the host
(``capturable=False``), so they are no device sync.
"""
from __future__ import annotations

import collections
import contextlib
import os
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
# Packets whose every overload syncs on CUDA.
_SYNCING = {_aten._local_scalar_dense, _aten.equal, _aten.nonzero, _aten.masked_select,
            _aten._unique, _aten._unique2, _aten.unique_dim, _aten.unique_consecutive,
            _aten.unique_dim_consecutive, _aten.bincount}
_TENSOR_METHODS = ("tolist", "numpy", "cpu")
_TORCH = os.path.dirname(torch.__file__)
_OPTIM = os.path.join(_TORCH, "optim")
_HERE = os.path.abspath(__file__)


def _bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
               for i in indices or ())


def _syncs(func, args, kwargs) -> bool:
    packet = func.overloadpacket
    if packet in _SYNCING:
        return True
    if packet in (_aten.index, _aten.index_put, _aten.index_put_, _aten._index_put_impl_):
        return _bool_index(args)
    if packet == _aten.repeat_interleave:
        return isinstance(args[0], torch.Tensor) and kwargs.get("output_size") is None
    return False


def _caller() -> tuple[str, bool]:
    """(``file:line function`` of the innermost frame in rcdml, or else outside torch; whether
    the read is the optimizer's own step counter)."""
    frames = [f for f in traceback.extract_stack()[:-2] if os.path.abspath(f.filename) != _HERE]
    in_optim = any(f.filename.startswith(_OPTIM) for f in frames[-6:])
    for f in reversed(frames):
        if f"{os.sep}rcdml{os.sep}" in f.filename and "benchmarks" not in f.filename:
            path = f.filename[f.filename.rindex(f"{os.sep}rcdml{os.sep}") + 1:]
            return f"{path}:{f.lineno} {f.name}", in_optim
    outside = [f for f in frames if not f.filename.startswith(_TORCH)]
    f = outside[-1] if outside else frames[-1]
    return f"{os.path.basename(f.filename)}:{f.lineno} {f.name}", in_optim


class SyncLog:
    def __init__(self) -> None:
        self.ops: list[tuple[str, str]] = []  # (operation, caller)

    def record(self, op: str) -> None:
        where, optimizer_counter = _caller()
        if not (optimizer_counter and op == "_local_scalar_dense"):
            self.ops.append((op, where))

    def counts(self) -> collections.Counter:
        return collections.Counter(self.ops)

    def summary(self, steps: int = 1) -> str:
        return "; ".join(f"{n / steps:g} x {op} at {where}"
                         for (op, where), n in sorted(self.counts().items())) or "none"


class _Mode(TorchDispatchMode):
    def __init__(self, log: SyncLog) -> None:
        super().__init__()
        self.log = log

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _syncs(func, args, kwargs):
            self.log.record(func.overloadpacket.__name__)
        return func(*args, **kwargs)


@contextlib.contextmanager
def count_syncs():
    """Records, in the returned :class:`SyncLog`, each operation inside the block that would
    synchronise a CUDA device."""
    log = SyncLog()
    originals = {name: getattr(torch.Tensor, name) for name in _TENSOR_METHODS}

    def wrap(name, method):
        def recorded(self, *args, **kwargs):
            log.record(name)
            return method(self, *args, **kwargs)
        return recorded

    for name, method in originals.items():
        setattr(torch.Tensor, name, wrap(name, method))
    try:
        with _Mode(log):
            yield log
    finally:
        for name, method in originals.items():
            setattr(torch.Tensor, name, method)
