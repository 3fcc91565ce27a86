"""Host copies the harness keeps between repeats, held outside the worker's measured memory.

On the CPU a worker's memory figure is its resident set (RSS). What the harness itself keeps
between repeats (the loaded input clip it hands out fresh copies of, the single-pass outputs
chunked outputs are compared with) would sit in that RSS and be reported as the pipeline's,
by an amount that grows with the clip length. A :class:`HostStore` writes those tensors into
an anonymous in-memory file (``memfd_create``, Linux) and reads fresh copies back: the bytes
stay in RAM, but in no process's RSS, since the file is never mapped. Where memfd is not
available (or no file descriptor is left) the store keeps the tensors in the process and
counts them (``resident_bytes``), which the worker's leak check subtracts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Hashable

import torch


@dataclass(frozen=True)
class _Slot:
    offset: int
    shape: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int


class HostStore:
    """key -> dict of CPU tensors (other values kept as they are). ``get`` returns new tensors,
    so a stage writing into its input never changes what the store holds."""

    def __init__(self) -> None:
        self.outside_rss = hasattr(os, "memfd_create")
        self._entries: dict[Hashable, tuple[int | None, dict[str, Any]]] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[Hashable]:
        return list(self._entries)

    def put(self, key: Hashable, value: dict[str, Any]) -> None:
        self.discard(key)
        fd = self._new_file()
        if fd is None:
            self._entries[key] = (None, {k: v.clone() if torch.is_tensor(v) else v for k, v in value.items()})
            return
        layout: dict[str, Any] = {}
        offset = 0
        for name, item in value.items():
            if not torch.is_tensor(item):
                layout[name] = item
                continue
            data = _bytes_of(item.detach().to("cpu"))
            _write_all(fd, data, offset)
            layout[name] = _Slot(offset, tuple(item.shape), item.dtype, len(data))
            offset += len(data)
        self._entries[key] = (fd, layout)

    def _new_file(self) -> int | None:
        """A memfd, or None (kept in the process) where there is none or no descriptor is left."""
        if not self.outside_rss:
            return None
        try:
            return os.memfd_create("benchrunner-host-copy", os.MFD_CLOEXEC)
        except OSError:  # e.g. EMFILE with very many inputs of one clip length
            return None

    def get(self, key: Hashable) -> dict[str, Any]:
        fd, layout = self._entries[key]
        if fd is None:
            return {k: v.clone() if torch.is_tensor(v) else v for k, v in layout.items()}
        return {name: _read(fd, slot) if isinstance(slot, _Slot) else slot for name, slot in layout.items()}

    def resident_bytes(self, device: str) -> int:
        """Bytes of the kept tensors inside this process's memory on ``device`` (0 outside RSS)."""
        if torch.device(device).type != "cpu":
            return 0
        return sum(v.nbytes for fd, layout in self._entries.values() if fd is None
                   for v in layout.values() if torch.is_tensor(v))

    def discard(self, key: Hashable) -> None:
        fd, _ = self._entries.pop(key, (None, None))
        if fd is not None:
            os.close(fd)

    def clear(self) -> None:
        for key in list(self._entries):
            self.discard(key)

    def __del__(self) -> None:
        self.clear()


def _bytes_of(tensor: torch.Tensor) -> memoryview:
    flat = tensor.contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


def _read(fd: int, slot: _Slot) -> torch.Tensor:
    tensor = torch.empty(slot.shape, dtype=slot.dtype)
    if slot.nbytes:
        view = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
        done = 0
        while done < slot.nbytes:
            got = os.preadv(fd, [view[done:]], slot.offset + done)
            if got <= 0:
                raise OSError(f"host store: short read ({done} of {slot.nbytes} bytes)")
            done += got
    return tensor
