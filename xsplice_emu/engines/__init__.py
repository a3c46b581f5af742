"""The engines that run livepatching on the machine: `controller` (the Python rendezvous over the built-in
firmware, `engines.controller.Livepatch`) and `xen` (Xen's own compiled livepatch code on every vCPU,
`engines.xen.XenLivepatch`). `LivepatchEngine` is the surface the session, the operator tool, scenarios and
`serve` use of either."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..livepatch.oracle import Oracle
    from ..livepatch.states import Action, ActionResult, PayloadState

ENGINES = ("controller", "xen")
"""What `[machine] engine` and `--engine` accept; the first is the default."""


class PayloadStatus(Protocol):
    """A payload as the engine reports it."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> PayloadState: ...

    @property
    def rc(self) -> int: ...

    @property
    def metadata(self) -> bytes: ...


class HypervisorLog(Protocol):
    """The hypervisor's log lines so far, and the testbed's own remarks beside them."""

    @property
    def log(self) -> list[str]: ...

    @property
    def notes(self) -> list[str]: ...


class LivepatchEngine(Protocol):
    """XEN_SYSCTL_LIVEPATCH_op and what a session observes of it."""

    applied: list[str]
    results: list[ActionResult]
    drop_flush: set[int]

    @property
    def payloads(self) -> Mapping[str, PayloadStatus]: ...

    @property
    def rendezvous(self) -> HypervisorLog: ...

    @property
    def oracle(self) -> Oracle | None: ...

    @property
    def real_xen(self) -> bool: ...

    def upload(self, name: str, data: bytes, *, allow_unsafe: bool = False) -> PayloadStatus: ...

    def get(self, name: str) -> PayloadStatus: ...

    def list(self) -> Sequence[PayloadStatus]: ...

    def action(self, name: str, action: Action, *, timeout_ns: int = 0, from_vcpu: int | None = None,
               nodeps: bool = False, unsafe: bool = False, from_irq: bool = False,
               preempt_requester_ns: int = 0) -> int: ...

    def run_action(self, name: str, action: Action, **options) -> ActionResult | None: ...

    def poll(self, ns: int | None = None) -> ActionResult | None: ...

    def collect(self) -> ActionResult | None: ...
