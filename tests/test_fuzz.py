"""Mutated payloads never wedge the machine nor change it when refused (`make fuzz` runs 10,000)."""

from __future__ import annotations

import pytest
from fuzzing import Fuzzer


@pytest.mark.slow
def test_mutated_payloads(image, payloads, request):
    """Refused mutants change nothing; accepted ones apply, revert, unload (or fail cleanly); hello still applies."""
    figures = Fuzzer(image, seed=request.config.getoption("fuzz_seed")).run(request.config.getoption("fuzz_cases"))
    print(f"\nfuzz: {figures}")
    assert figures.findings == []
    assert figures.accepted and figures.refused
