"""Small helpers shared by the livepatch tests."""

from __future__ import annotations

import importlib.util
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from xsplice_emu import Machine, MachineConfig, builtin_firmware
from xsplice_emu.authoring.build import build_payload
from xsplice_emu.control.session import Session
from xsplice_emu.engines.controller import Livepatch
from xsplice_emu.errors import ToolchainError
from xsplice_emu.livepatch import Action
from xsplice_emu.livepatch.abi import NAME_MAX, PAYLOAD_DESCRIPTOR
from xsplice_emu.machine import VcpuState
from xsplice_emu.server import SysctlServer

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


def name_in_guest(livepatch: Livepatch, name: str) -> bytes:
    """The name a payload's hooks see: the NUL-terminated bytes its descriptor points at."""
    memory = livepatch.machine.memory
    at = memory.read_u64(livepatch.get(name).guest.address + PAYLOAD_DESCRIPTOR.offset("name"))
    return memory.read(at, NAME_MAX).split(b"\0", 1)[0]


def debian_file(fetch: Callable[[], Path]) -> Path:
    """A file from Debian's Xen packages (fetched once into the cache), or a skip saying why it could not be."""
    try:
        return fetch()
    except ToolchainError as exc:
        pytest.skip(str(exc))


class Served:
    """A session served on a short socket path from a thread of the test process."""

    def __init__(self, session: Session, **options):
        self.session = session
        self.directory = tempfile.TemporaryDirectory(prefix="xs")
        self.path = Path(self.directory.name) / "sock"
        self.server = SysctlServer(session, self.path, **options)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.server.serve()
        except BaseException as exc:  # what the test reports as "the server died"
            self.failure = exc

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(timeout=10)
        self.directory.cleanup()


def built(tmp_path: Path, name: str, source: str) -> bytes:
    """The payload built from C `source` (against the built-in firmware), as bytes."""
    path = tmp_path / f"{name}.c"
    path.write_text(source)
    return build_payload(path, tmp_path / f"{name}.livepatch", firmware=builtin_firmware()).read_bytes()


def bench_module(name: str):
    """bench/`name`.py, imported (for the helpers a benchmark and its test share)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
