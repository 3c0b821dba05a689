"""``tune_allocator``: freed tensors stay in the heap, so reusing their memory costs no page faults."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import resource, torch
from microexp.runtime import tune_allocator
state = tune_allocator()
torch.empty(16 * 2**20).fill_(1.0)  # 64 MB, allocated and freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(16 * 2**20).fill_(2.0)  # the same size again
print(state, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(malloc: str) -> tuple[str, int]:
    env = {**os.environ, "MICROEXP_MALLOC": malloc}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    state, faults = out.split()
    return state, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_reused_memory_costs_no_page_faults_and_the_opt_out_restores_glibc_defaults() -> None:
    state, faults = _faults("")
    assert state == "tuned" and faults < 1000  # 64 MB in 4 KiB pages would be 16,384 first-touch faults
    state, faults = _faults("system")
    assert state == "system" and faults > 8000  # the control: glibc maps the second 64 MB afresh
