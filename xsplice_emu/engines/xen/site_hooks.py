"""The instructions the platform answers (`sites.py`), hooked on the vCPUs once one is about to run them.

Unicorn looks through every code hook of an instance for each instruction it translates, and code hooks slow
the blocks it runs: Xen's ~780 sites hooked from the start made each translation about 25 times dearer. Each
site is a trap of the machine's block table instead (`BlockTable.set_traps`): the first block holding one
stops before it runs, the sites it holds get their hooks on every vCPU (one call into C, `native.hook_sites`),
the vCPU that stopped drops its translation of the block (no other vCPU can have one: it would have stopped
first), and the slice goes on from that block (the same instructions in the same slices: the schedule is the
same as with every hook in place from the start). The rest of the function around the block has its sites
hooked at the same time (no vCPU has translated a block holding a site not hooked yet, by the same argument): a
function's first run then stops once, not at each of its blocks that holds a site (each stop costs a new trap
table, ~0.15 ms; Xen's `check_for_livepatch_work` held nine).
"""

from __future__ import annotations

import array
import bisect
import ctypes
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...machine import Vcpu, native
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


IndexedCodeHook = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_size_t)
"""A UC_HOOK_CODE callback whose user data is the index of the vCPU it runs on."""


def running(body: Callable[[Vcpu], None]) -> HookFactory:
    """The factory of hooks that run `body(vcpu)` at a site (an exception it raises stops the slice). Every vCPU's
    hook is one ctypes callback, told which vCPU by the hook's user data, and a vCPU's guarded call is made the
    first time it runs there: making a ctypes callback and taking its address costs ~3.5 us, a guarded call ~1.5,
    and a first apply on 72 vCPUs made them for 11 kinds of site on every vCPU (792), most never reached."""
    vcpus: dict[int, Vcpu] = {}
    hooks: dict[int, Callable[..., Any]] = {}

    def dispatch(uc: int, address: int, size: int, index: int) -> None:
        hook = hooks.get(index)
        if hook is None:
            vcpu = vcpus[index]
            hook = hooks[index] = guarded(vcpu, lambda address, size: body(vcpu))
        hook(uc, address, size, index)
    shared = IndexedCodeHook(dispatch)

    def factory(vcpu: Vcpu) -> NativeHook:
        vcpus[vcpu.index] = vcpu
        return shared, ctypes.c_void_p(vcpu.index)
    return factory


class SiteHooks:
    """The sites of one machine not hooked yet, and how to hook each."""

    def __init__(self, machine: XenMachine):
        self.machine = machine
        self._factories: dict[int, list[HookFactory]] = {}
        self._unhooked = array.array("Q")  # sorted (as the block table takes its traps: no list to convert)
        self._hooks: dict[HookFactory, array.array] = {}  # a kind's hook on each vCPU, as C takes them
        self._callbacks: dict[HookFactory, list[NativeHook]] = {}  # what those point to: kept alive
        self._armed = False
        spans = sorted((begin, end) for begin, end, _ in machine.code_spans)
        self._span_begins = [begin for begin, _ in spans]
        self._span_ends = [end for _, end in spans]

    def add(self, addresses: tuple[int, ...], factory: HookFactory) -> None:
        """Hook each of `addresses` with `factory(vcpu)`'s callback once a vCPU is about to run it. Added once
        the vCPUs run (an engine's observer), a site no trap waits for any more is hooked at once on every vCPU,
        which drops what it translated there."""
        at_once = []
        for address in addresses:
            self._factories.setdefault(address, []).append(factory)
            if self._armed and address not in self._unhooked:
                at_once.append((address, factory))
        if at_once:
            self._hook_everywhere(at_once)
            for vcpu in self.machine.vcpus:
                for address, _ in at_once:
                    vcpu.flush(address, address + 1)

    def arm(self) -> None:
        """Make every site added a trap (before the vCPUs first run)."""
        self._unhooked = array.array("Q", sorted(self._factories))
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
        self._hook_everywhere([(site, factory) for site in sites for factory in self._factories[site]])
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

    def _hook_everywhere(self, hooks: list[tuple[int, HookFactory]]) -> None:
        """Hook each (site, factory) of `hooks` on every vCPU (in vCPU order, then in the order given: the order in
        which Unicorn calls two hooks at one site), in one call into C."""
        sites = array.array("Q", [word for site, factory in hooks for word in (site, self._per_vcpu(factory))])
        native.hook_sites(sites, len(hooks), len(self.machine.vcpus))

    def _per_vcpu(self, factory: HookFactory) -> int:
        """Where `factory`'s hook for each vCPU lies as the C side takes it (a `native.hook_sites` vCPU hook per
        vCPU: made once, kept alive here; an array of words ~5x cheaper to make than ctypes structures)."""
        hooks = self._hooks.get(factory)
        if hooks is None:
            vcpus = self.machine.vcpus
            made = self._callbacks[factory] = [factory(vcpu) for vcpu in vcpus]
            addresses: dict[int, int] = {}  # id -> address, each callback taken once (all alive in `made`)
            for callback, _ in made:
                if id(callback) not in addresses:
                    addresses[id(callback)] = native.address_of(callback)
            hooks = self._hooks[factory] = array.array("Q", [
                word for vcpu, (callback, user) in zip(vcpus, made, strict=True)
                for word in (vcpu.budget.uc, addresses[id(callback)], 0 if user is None else user.value or 0)])
        return hooks.buffer_info()[0]
