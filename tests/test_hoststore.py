"""The harness's kept host copies (input clip, single-pass references) stay out of the RSS
a CPU worker reports, and come back bit-identical as fresh tensors."""

from __future__ import annotations

import pytest
import torch

from benchrunner.measure.memory import read_status_bytes, release_free_heap
from benchrunner.run.hoststore import HostStore

MIB = 1 << 20


def test_what_comes_back_is_bit_identical_and_fresh():
    store = HostStore()
    value = {"audio": torch.randn(1, 4001), "frames": torch.rand(1, 5, 3, 8, 8).to(torch.bfloat16),
             "mask": torch.tensor([True, False]), "empty": torch.zeros(0), "scalar": torch.tensor(3.5),
             "strided": torch.arange(12.0).view(3, 4).t(), "note": "kept as is"}
    store.put("clip", value)
    first, second = store.get("clip"), store.get("clip")
    for name, tensor in value.items():
        if torch.is_tensor(tensor):
            assert first[name].dtype == tensor.dtype and torch.equal(first[name], tensor)
    assert first["note"] == "kept as is"
    first["audio"].add_(1.0)  # a stage writing into its input
    assert torch.equal(second["audio"], value["audio"]) and torch.equal(store.get("clip")["audio"], value["audio"])


def test_kept_copies_are_not_in_the_resident_set():
    store = HostStore()
    if not store.outside_rss:
        pytest.skip("no memfd_create on this system: the store keeps copies in the process and says so")
    release_free_heap()
    before = read_status_bytes("VmRSS")["VmRSS"]
    for i in range(4):
        block = {"x": torch.ones(64 * MIB // 4)}  # 64 MiB, every page touched
        store.put(i, block)
        del block
    release_free_heap()
    grown = read_status_bytes("VmRSS")["VmRSS"] - before
    assert grown < 32 * MIB, f"256 MiB kept, RSS grew {grown / MIB:.1f} MiB"
    assert store.resident_bytes("cpu") == 0
    assert torch.equal(store.get(3)["x"], torch.ones(64 * MIB // 4))


def test_replacing_and_clearing_frees_the_copies():
    store = HostStore()
    store.put("a", {"x": torch.ones(10)})
    store.put("a", {"x": torch.zeros(10)})
    assert torch.equal(store.get("a")["x"], torch.zeros(10)) and len(store) == 1
    store.clear()
    assert "a" not in store and len(store) == 0


def test_without_a_file_the_copy_stays_in_the_process_and_is_counted(monkeypatch):
    import os

    def no_descriptor_left(*args):
        raise OSError(24, "Too many open files")
    monkeypatch.setattr(os, "memfd_create", no_descriptor_left, raising=False)
    store = HostStore()
    store.put("clip", {"x": torch.ones(1000)})
    assert store.resident_bytes("cpu") == 4000 and store.resident_bytes("cuda:0") == 0
    assert torch.equal(store.get("clip")["x"], torch.ones(1000))
