"""The pre-flight a payload author runs before deploying (`xsplice-emu payload check`).

The payload goes through the real upload and a trial apply on a fresh
one-vCPU machine booted from the firmware, so the verdict and errno are the
ones the livepatch sysctl gives. For each function record it shows the patch
site at its address, the bytes there before and after the patch, whether the
jump reaches, whether the expectation holds against the bytes in memory, and
whether the target is on the NMI path or in the patching code.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

from ..errors import LivepatchError
from ..session import Session, Versions
from .payload import FuncRecord
from .states import Action


@dataclass(frozen=True)
class PatchSite:
    """One function record's patch site, as the trial machine holds it before the apply."""

    record: FuncRecord
    target: str  # the old address described with the firmware's symbols
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
    apply: LivepatchError | int | None  # refused, the action's rc, or None (not tried: the upload failed)
    versions_before: Versions
    versions_after: Versions | None

    @property
    def ok(self) -> bool:
        """Accepted at upload, applied with rc 0, every expectation met and every jump in reach."""
        return (self.upload is None and self.apply == 0
                and all(site.reaches and site.expectation in ("none", "met") for site in self.sites))


def preflight(name: str, data: bytes, firmware: str | Path | None = None) -> Preflight:
    """Upload `data` as payload `name` on a fresh one-vCPU machine, describe its patch sites, and apply it."""
    session = Session(vcpus=1, seed=0, firmware=firmware)
    livepatch = session.livepatch
    versions_before = session.versions()[0]
    try:
        livepatch.upload(name, data)
        refused = None
    except LivepatchError as error:
        refused = error
    if refused is not None and refused.errno == errno.EPERM:
        livepatch.upload(name, data, allow_unsafe=True)  # refused for its target only: still show the sites
    payload = livepatch.payloads.get(name)
    if payload is None:
        return Preflight(name, refused, (), None, versions_before, None)
    sites = tuple(_site(session, func) for func in payload.loaded.funcs)
    if refused is not None:
        return Preflight(name, refused, sites, None, versions_before, None)
    try:
        result = livepatch.run_action(name, Action.APPLY)
        applied: LivepatchError | int = result.rc if result is not None else -errno.ETIMEDOUT
    except LivepatchError as error:
        applied = error
    return Preflight(name, None, sites, applied, versions_before, session.versions()[0])


def _site(session: Session, func: FuncRecord) -> PatchSite:
    machine, livepatch = session.machine, session.livepatch
    arch = machine.arch
    reaches = func.is_nop or arch.jump_reaches(func.old_addr, func.new_addr)
    length = arch.patch_size(func.new_addr, func.new_size)
    # Enough bytes for the last instruction the patch cuts into (x86 instructions are at most 15 bytes).
    old = machine.memory.read(func.old_addr, length + 15)
    before = []
    for address, _, text in arch.instructions(old, func.old_addr):
        if address >= func.old_addr + length:
            break
        before.append((address, text))
    patch = arch.patch(func.old_addr, func.new_addr, func.new_size) if reaches else b""
    after = tuple((address, text) for address, _, text in arch.instructions(patch, func.old_addr))
    mismatch = livepatch.expectation_mismatch(func)
    return PatchSite(
        record=func,
        target=machine.image.describe(func.old_addr),
        before=tuple(before),
        after=after,
        reaches=reaches,
        expectation="none" if func.expect is None else mismatch or "met",
        unsafe=livepatch.unsafe_reason(func.old_addr),
    )
