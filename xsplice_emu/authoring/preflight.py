"""The pre-flight a payload author runs before deploying (`xsplice-emu payload check`).

The payload goes through the real upload and a trial apply on a fresh
one-vCPU machine, so the verdict and errno are the ones the livepatch sysctl
gives: against the firmware, or against a real Xen image (`--xen-syms`)
mapped at its link addresses, with the payload where Xen 4.17 places it and
the real image's version functions called before and after. For each
function record it shows the patch site, the bytes there before and after
the patch, whether the jump reaches, whether the expectation holds against
the real bytes, and whether the target is on the NMI path or in the patching
code (on a real Xen a warning: Xen 4.17 does not refuse it). On the xen
engine the upload and the trial apply are Xen's own: its livepatch_op and
rendezvous on a one-vCPU machine running the real image (the sites are still
read by the testbed's loader).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..arch import Architecture
from ..control.session import Session, Versions
from ..engines import ENGINES
from ..errors import LivepatchError
from ..image import CodeReader
from ..livepatch.payload import FuncRecord
from ..livepatch.states import Action


@dataclass(frozen=True)
class PatchSite:
    """One function record's patch site, before the patch is applied."""

    record: FuncRecord
    target: str  # the old address described with the hypervisor's symbols
    before: tuple[tuple[int, str], ...]  # (address, instruction) the patch overwrites
    after: tuple[tuple[int, str], ...]  # (address, instruction) the patch writes
    reaches: bool  # whether the jump reaches new_addr (NOP records: always)
    expectation: str  # "none", "met", or what differs
    unsafe: str | None  # why the target must not be patched, or None


@dataclass(frozen=True)
class Preflight:
    """Xen's verdict on a payload at upload and at apply, and what the patch does."""

    name: str
    upload: LivepatchError | None
    sites: tuple[PatchSite, ...]
    apply: LivepatchError | int | None  # refused, the action's rc, or None (not tried)
    versions_before: Versions | None  # None: checked offline against an image
    versions_after: Versions | None

    @property
    def ok(self) -> bool:
        """Accepted at upload, applied with rc 0 (when tried), every expectation met and every jump in reach."""
        return (self.upload is None and self.apply in (0, None)
                and all(site.reaches and site.expectation in ("none", "met") for site in self.sites))

    @property
    def warnings(self) -> tuple[str, ...]:
        """What an accepted payload does that Xen allows but should not (`do_nmi: it handles NMIs`); a target
        the upload refused for it is the refusal, not a warning."""
        if self.upload is not None:
            return ()
        return tuple(f"{site.record.name}: {site.unsafe}" for site in self.sites if site.unsafe)


def preflight(name: str, data: bytes, *, firmware: str | Path | None = None,
              xen_syms: str | Path | None = None, engine: str = ENGINES[0]) -> Preflight:
    """Upload `data` as payload `name` on a fresh one-vCPU machine (with the real Xen image `xen_syms` when
    given), describe its patch sites, and apply it; `engine` "xen": the upload and the apply on a machine
    running `xen_syms`, by Xen's own code."""
    with Session(vcpus=1, seed=0, firmware=firmware, xen_syms=xen_syms) as session:
        livepatch, machine = session.controller_livepatch("preflight"), session.controller_machine("preflight")
        versions_before = session.versions()[0]
        refused = _uploaded(session, name, data)
        if refused is not None and refused.errno == errno.EPERM:
            livepatch.upload(name, data, allow_unsafe=True)  # refused for its target only: still show the sites
        payload = livepatch.payloads.get(name)
        sites = () if payload is None else tuple(
            _site(machine.arch, livepatch.read_code, machine.describe, livepatch.unsafe_reason, func)
            for func in payload.loaded.funcs)
        if engine == ENGINES[0]:
            return _trial_apply(session, name, refused, sites, versions_before)
    with Session(vcpus=1, seed=0, xen_syms=xen_syms, engine=engine) as session:
        versions_before = session.versions()[0]
        return _trial_apply(session, name, _uploaded(session, name, data), sites, versions_before)


def _trial_apply(session: Session, name: str, refused: LivepatchError | None, sites: tuple[PatchSite, ...],
                 versions_before: Versions) -> Preflight:
    """The preflight of `name` uploaded on `session` (or `refused`): its apply there, and the versions after."""
    if refused is not None:
        return Preflight(name, refused, sites, None, versions_before, None)
    try:
        result = session.livepatch.run_action(name, Action.APPLY)
        applied: LivepatchError | int = result.rc if result is not None else -errno.ETIMEDOUT
    except LivepatchError as error:
        applied = error
    return Preflight(name, None, sites, applied, versions_before, session.versions()[0])


def _uploaded(session: Session, name: str, data: bytes) -> LivepatchError | None:
    """Upload `data` as `name` on `session`: None when accepted, else the refusal."""
    try:
        session.livepatch.upload(name, data)
    except LivepatchError as error:
        return error
    return None


def _site(arch: Architecture, read: CodeReader, describe: Callable[[int], str],
          unsafe: Callable[[int], str | None], func: FuncRecord) -> PatchSite:
    reaches = func.is_nop or arch.jump_reaches(func.old_addr, func.new_addr)
    at, length = func.patch_addr, func.patch_size
    # Enough bytes for the last instruction the patch cuts into (x86 instructions are at most 15 bytes).
    old = read(at, length + 15) or read(at, length) or b""
    before = []
    for address, _, text in arch.instructions(old, at):
        if address >= at + length:
            break
        before.append((address, text))
    patch = arch.patch(at, func.new_addr, length) if reaches else b""
    after = tuple((address, text) for address, _, text in arch.instructions(patch, at))
    return PatchSite(
        record=func,
        target=describe(func.old_addr),
        before=tuple(before),
        after=after,
        reaches=reaches,
        expectation="none" if func.expect is None else func.expectation_mismatch(read) or "met",
        unsafe=unsafe(func.old_addr),
    )
