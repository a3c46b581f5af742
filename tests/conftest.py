"""Shared fixtures: the built-in firmware, built once per session."""

from __future__ import annotations

import pytest

from xsplice_emu import Machine, MachineConfig, builtin_firmware, load_image


@pytest.fixture(scope="session")
def image():
    """The built-in firmware image."""
    return load_image(builtin_firmware())


@pytest.fixture
def boot(image):
    """Make a machine with the built-in firmware and run it for `ms` virtual ms."""
    def make(vcpus: int = 2, *, seed: int = 0, ms: float = 3, **options) -> Machine:
        machine = Machine(image, config=MachineConfig(vcpus=vcpus, seed=seed, **options))
        machine.run_for(int(ms * 1_000_000))
        return machine
    return make
