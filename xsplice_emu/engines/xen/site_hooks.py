"""The instructions the platform answers (`sites.py`), hooked on the vCPUs once one is about to run them.

Unicorn looks through every code hook of an instance for each instruction it translates, and code hooks slow
the blocks it runs: Xen's ~780 sites hooked from the start made each translation about 25 times dearer. Each
site is a trap of the machine's block table instead (`BlockTable.set_traps`): the first block holding one
stops before it runs, the sites it holds get their hooks on every vCPU, the vCPU that stopped drops its
translation of the block (no other vCPU can have one: it would have stopped first), and the slice goes on
from that block (the same instructions in the same slices: the schedule is the same as with every hook in
place from the start). The rest of the function around the block has its sites hooked at the same time (no
vCPU has translated a block holding a site not hooked yet, by the same argument): a function's first run then
stops once, not at each of its blocks that holds a site (each stop costs a new trap table, ~0.15 ms; Xen's
`check_for_livepatch_work` held nine).
"""

from __future__ import annotations

import bisect
import ctypes
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from unicorn import UC_HOOK_CODE

from ...machine import Vcpu
from ...machine.hooks import guarded

if TYPE_CHECKING:
    from .machine import XenMachine

CodeHook = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_void_p)
"""A UC_HOOK_CODE callback as libunicorn calls it (the binding's `hook_add` costs ~0.4 ms a call)."""
NativeHook = tuple[Any, ctypes.c_void_p | None]
"""A UC_HOOK_CODE callback libunicorn can call (a CodeHook or a C function's address) and its user data."""
HookFactory = Callable[[Vcpu], NativeHook]
"""Given a vCPU, its hook for a kind of site."""


def python_hook(callback: Callable[..., Any]) -> NativeHook:
    """A Python UC_HOOK_CODE callback `(uc, address, size, user)` as libunicorn calls it."""
    return CodeHook(callback), None


def running(body: Callable[[Vcpu], None]) -> HookFactory:
    """The factory of hooks that run `body(vcpu)` at a site (an exception it raises stops the slice)."""
    return lambda vcpu: python_hook(guarded(vcpu, lambda address, size: body(vcpu)))


class SiteHooks:
    """The sites of one machine not hooked yet, and how to hook each."""

    def __init__(self, machine: XenMachine):
        self.machine = machine
        self._factories: dict[int, list[HookFactory]] = {}
        self._unhooked: list[int] = []  # sorted
        self._hooks: dict[tuple[HookFactory, int], NativeHook] = {}  # one per kind and vCPU: kept alive
        self._armed = False
        spans = sorted((begin, end) for begin, end, _ in machine.code_spans)
        self._span_begins = [begin for begin, _ in spans]
        self._span_ends = [end for _, end in spans]

    def add(self, addresses: tuple[int, ...], factory: HookFactory) -> None:
        """Hook each of `addresses` with `factory(vcpu)`'s callback once a vCPU is about to run it. Added once
        the vCPUs run (an engine's observer), a site no trap waits for any more is hooked at once on every vCPU,
        which drops what it translated there."""
        for address in addresses:
            self._factories.setdefault(address, []).append(factory)
            if self._armed and address not in self._unhooked:
                for vcpu in self.machine.vcpus:
                    self._hook(vcpu, address, factory)
                    vcpu.flush(address, address + 1)

    def arm(self) -> None:
        """Make every site added a trap (before the vCPUs first run)."""
        self._unhooked = sorted(self._factories)
        self._armed = True
        self.machine.table.set_traps(self._unhooked)
        for vcpu in self.machine.vcpus:
            vcpu.on_trap = self._trapped

    def _trapped(self, trapped: Vcpu, address: int, size: int) -> None:
        """A block `[address, address + size)` holding sites not hooked yet is about to run: hook them, and those
        of the functions it lies in."""
        begin, end = self._widened(address, address + size)
        low = bisect.bisect_left(self._unhooked, begin)
        high = bisect.bisect_left(self._unhooked, end)
        sites = self._unhooked[low:high]
        del self._unhooked[low:high]
        for vcpu in self.machine.vcpus:
            for site in sites:
                for factory in self._factories[site]:
                    self._hook(vcpu, site, factory)
        trapped.flush(address, address + size)
        self.machine.table.set_traps(self._unhooked)

    def _widened(self, begin: int, end: int) -> tuple[int, int]:
        """`[begin, end)` grown to the start of the function (or assembly span) `begin` lies in and the end of
        the one `end - 1` lies in."""
        k = bisect.bisect_right(self._span_begins, begin) - 1
        if k >= 0 and begin < self._span_ends[k]:
            begin = self._span_begins[k]
        k = bisect.bisect_right(self._span_begins, end - 1) - 1
        if k >= 0 and end - 1 < self._span_ends[k]:
            end = max(end, self._span_ends[k])
        return begin, end

    def _hook(self, vcpu: Vcpu, site: int, factory: HookFactory) -> None:
        hook = self._hooks.get((factory, vcpu.index))
        if hook is None:
            hook = self._hooks[factory, vcpu.index] = factory(vcpu)
        callback, user = hook
        vcpu.add_hook(UC_HOOK_CODE, callback, user, site, site)
