"""Freed tensor memory is kept for reuse: a loop that frees several 6 MB tensors at once (as the
IW bound's eager chunks do) stops page-faulting once the heap has grown to its peak."""

import subprocess
import sys

PROGRAM = """
import resource, sys, torch
from bench.runtime.allocator import keep_freed_memory
applied = keep_freed_memory()
def cycle():
    ts = [torch.ones(1_568_000) for _ in range(5)]
    del ts
for _ in range(3):
    cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    cycle()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = 10 * 5 * 1_568_000 * 4 // 4096  # what every cycle touches


def test_freed_blocks_are_reused_without_page_faults():
    applied, faults = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True
    ).stdout.split()
    assert applied == "True"
    assert int(faults) < PAGES / 20
