"""Small helpers shared by the livepatch tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from xsplice_emu import Machine, MachineConfig, builtin_firmware
from xsplice_emu.errors import ToolchainError
from xsplice_emu.livepatch import Action, Livepatch
from xsplice_emu.livepatch.build import build_payload
from xsplice_emu.machine import VcpuState

ROOT = Path(__file__).resolve().parent.parent
PAYLOADS = ROOT / "payloads" / "build"


def upload(livepatch: Livepatch, name: str, file: str) -> None:
    """Upload payloads/build/`file` as `name`."""
    livepatch.upload(name, (PAYLOADS / file).read_bytes())


def extra_versions(machine: Machine) -> set[str]:
    """What xen_extra_version() returns on each vCPU, as a set."""
    return {machine.memory.read_cstring(address) for address in machine.call_all("xen_extra_version")}


def machine_free(machine: Machine) -> bool:
    """No vCPU parked, no work flagged, NMIs going to the default callback."""
    image = machine.image
    return (all(vcpu.state is not VcpuState.PARKED for vcpu in machine.vcpus)
            and not any(machine.per_cpu("xsplice_work_to_do"))
            and machine.memory.read_u64(image.address("nmi_callback")) == image.address("default_nmi_callback"))


def hello_uploaded(image, *, vcpus: int, seed: int, boot_ns: int = 2_000_000) -> tuple[Machine, Livepatch]:
    """A machine of `vcpus` booted for `boot_ns` virtual ns, xen_hello_world uploaded as "hello"."""
    machine = Machine(image, config=MachineConfig(vcpus=vcpus, seed=seed))
    machine.run_for(boot_ns)
    livepatch = Livepatch(machine)
    upload(livepatch, "hello", "xen_hello_world.livepatch")
    return machine, livepatch


def hello_still_applies(machine: Machine, livepatch: Livepatch) -> bool:
    """Upload xen_hello_world as "hello" and apply it: whether every vCPU then returns "Hello World"."""
    upload(livepatch, "hello", "xen_hello_world.livepatch")
    return livepatch.run_action("hello", Action.APPLY).rc == 0 and extra_versions(machine) == {"Hello World"}


def debian_file(fetch: Callable[[], Path]) -> Path:
    """A file from Debian's Xen packages (fetched once into the cache), or a skip saying why it could not be."""
    try:
        return fetch()
    except ToolchainError as exc:
        pytest.skip(str(exc))


def built(tmp_path: Path, name: str, source: str) -> bytes:
    """The payload built from C `source` (against the built-in firmware), as bytes."""
    path = tmp_path / f"{name}.c"
    path.write_text(source)
    return build_payload(path, tmp_path / f"{name}.livepatch", firmware=builtin_firmware()).read_bytes()
