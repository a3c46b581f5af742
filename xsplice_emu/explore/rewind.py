"""Put a booted session back as it was, in the same process: many runs per forked child instead of one.

`Rewind.of(session)` (in the fork server, once) records what a run can
change: every mutable Python container reachable from the session (object
attributes, lists, dicts, sets, byte arrays, closure cells, random number
generators, ctypes structures the C hooks share), each vCPU's Unicorn
context, and a copy of the host mappings under the guest (RAM, page tables).
In a child, `start()` has the kernel watch those mappings for stores
(dirty.py); `rewind()` after a run copies back only the pages written, puts
every recorded container back to its recorded contents (whatever the run
made and hung off them is dropped with them), restores the contexts,
flushes every TLB, and drops every instance's translated code of what the
run changed in executable pages (under the page tables as the run left them
and as recorded: a page's translations are found through the mapping its
permissions pick), with the block table's counts there.

Every other translation is kept, and so are the chained jumps between them:
what a block does depends only on its address and bytes, and where a slice
stops no longer depends on which blocks are chained (block_budget.c counts
no block after a stop). So a run after a rewind does what the same run
forked afresh or started fresh does (outcomes and digests:
tests/test_explore.py). Something it cannot put back (a generator, an
iterator, another C object holding state) makes `of` raise NotRewindable:
such a session keeps one fork per run.
"""

from __future__ import annotations

import array
import ctypes
import enum
import gc
import mmap
import random
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import capstone
from unicorn import UC_PROT_EXEC, Uc

from ..control.session import Session
from ..errors import MachineError
from ..machine import Machine
from ..machine.coherence import changed_runs
from ..machine.spec import PAGE_SIZE
from .dirty import WrittenPages

STATELESS = (type(None), bool, int, float, complex, str, bytes, range, type, types.ModuleType,
             types.BuiltinFunctionType, types.MethodWrapperType, types.CodeType, enum.Enum, PurePath, memoryview,
             capstone.Cs, capstone.CsInsn, ctypes.CDLL)
"""Kinds of object with no state of their own a run could change (nor any worth following)."""
FOLLOWED = (tuple, frozenset, types.MethodType)
"""Immutable containers: what they hold is followed, they are not saved."""


class NotRewindable(MachineError):
    """A session holds state `Rewind` cannot record and put back."""


@dataclass(frozen=True)
class _Mapping:
    host_address: int
    size: int
    saved: bytes
    view: memoryview


class Rewind:
    """What a run of one booted session can change, recorded, and how to put it back (the module docstring)."""

    def __init__(self, machine: Machine, restorers: list[Callable[[], object]], mappings: list[_Mapping]):
        self._machine = machine
        self._restorers = restorers
        self._mappings = mappings
        self._contexts = [(vcpu.uc, vcpu.uc.context_save()) for vcpu in machine.instances.all()]
        self._code_pages = frozenset(page for begin, end in machine.paging.executable(0, machine.memory.size)
                                     for page in range(begin, end, PAGE_SIZE))
        """The RAM pages executable when recorded."""
        self._written: WrittenPages | None = None

    @classmethod
    def of(cls, session: Session) -> Rewind:
        """Record `session` now (NotRewindable: it holds something that cannot be put back)."""
        if not isinstance(session.machine, Machine):
            raise NotRewindable("only the controller engine's machine can be rewound")
        session.machine.instances.spare()  # made now, not again in every run that needs it (a rewind drops it)
        restorers: list[Callable[[], object]] = []
        mappings: list[_Mapping] = []
        seen: set[int] = set()
        pending: list[Any] = [session]
        while pending:
            thing = pending.pop()
            if id(thing) in seen or isinstance(thing, STATELESS):
                continue
            seen.add(id(thing))
            pending += _record(thing, restorers, mappings)
        return cls(session.machine, restorers, mappings)

    def start(self) -> None:
        """In the process that runs: have the kernel note the pages written from now (MachineError: it
        cannot)."""
        written = WrittenPages()
        try:
            for mapping in self._mappings:
                written.track(mapping.host_address, mapping.size)
        except MachineError:
            written.close()
            raise
        self._written = written

    def rewind(self) -> None:
        """Put the session back as it was when recorded (after `start`)."""
        assert self._written is not None, "start() first"
        machine = self._machine
        written = [(mapping, begin - mapping.host_address, end - mapping.host_address)
                   for begin, end in self._written.take()
                   for mapping in self._mappings if mapping.host_address <= begin < mapping.host_address + mapping.size]
        ram = next(m for m in self._mappings if m.host_address == machine.memory.host_address)
        code = [page for mapping, low, high in written if mapping is ram for page in range(low, high, PAGE_SIZE)
                if page in self._code_pages or machine.paging.of(page) & UC_PROT_EXEC]  # when recorded, or now
        ended = {page: bytes(ram.view[page:page + PAGE_SIZE]) for page in code}
        left = {page: machine.paging.of(page) for page in code}
        self._drop_code(code, ended, ram.saved)  # as the run left the page tables...
        for mapping, low, high in written:
            mapping.view[low:high] = mapping.saved[low:high]
        for restore in self._restorers:
            restore()
        for uc, context in self._contexts:
            uc.context_restore(context)
        for vcpu in machine.instances.all():
            vcpu.flush_tlb()
        self._drop_code([page for page in code if machine.paging.of(page) != left[page]], ended,
                        ram.saved)  # ...and as recorded, where that maps them elsewhere
        self._written.take()  # the copying back wrote them: clean again

    def _drop_code(self, pages: list[int], ended: dict[int, bytes], saved: bytes) -> None:
        """Drop every instance's translations of what the run changed in the executable ones of the RAM `pages`
        (`ended`: their bytes as the run left them), and the block counts there."""
        machine = self._machine
        for page in pages:
            if machine.paging.of(page) & UC_PROT_EXEC:
                for begin, end in changed_runs(saved[page:page + PAGE_SIZE], ended[page]):
                    for virtual in _addresses(machine, page + begin):
                        machine.invalidate_code(virtual, virtual + end - begin)

    def close(self) -> None:
        if self._written is not None:
            self._written.close()
            self._written = None


def _addresses(machine: Machine, physical: int) -> list[int]:
    """The guest addresses of RAM offset `physical`: itself, and where a window maps it."""
    return [physical] + [window.virtual + physical - window.physical for window in machine.memory.windows
                         if window.physical <= physical < window.physical + window.size]


def _record(thing: Any, restorers: list[Callable[[], object]], mappings: list[_Mapping]) -> list[Any]:
    """Add what puts `thing` back to `restorers` (or its host mapping to `mappings`); what it holds, to follow."""
    if isinstance(thing, FOLLOWED):
        return list(gc.get_referents(thing))
    if isinstance(thing, Uc):  # its context is restored, its hooks and regions never change after boot
        return []
    if isinstance(thing, types.FunctionType):  # its closure's cells; not its globals
        return list(thing.__closure__ or ())
    if isinstance(thing, types.CellType):
        try:
            value = thing.cell_contents
        except ValueError:
            return []
        restorers.append(lambda: setattr(thing, "cell_contents", value))
        return [value]
    if isinstance(thing, mmap.mmap):
        view = memoryview(thing)
        address = ctypes.addressof(ctypes.c_char.from_buffer(thing))
        mappings.append(_Mapping(address, len(thing), bytes(thing), view))
        return []
    if isinstance(thing, ctypes._SimpleCData | ctypes.Structure | ctypes.Array):
        saved = ctypes.string_at(ctypes.addressof(thing), ctypes.sizeof(thing))
        address = ctypes.addressof(thing)
        restorers.append(lambda: ctypes.memmove(address, saved, len(saved)))
        return []
    if isinstance(thing, ctypes._Pointer | ctypes._CFuncPtr):  # type: ignore[attr-defined]
        return []
    if isinstance(thing, random.Random):
        state = thing.getstate()
        restorers.append(lambda: thing.setstate(state))
        return [vars(thing)]
    if isinstance(thing, dict):  # Counter and defaultdict too: their other attributes do not change
        saved_dict = dict(thing)
        restorers.append(lambda: (dict.clear(thing), dict.update(thing, saved_dict)))
        return [*saved_dict.keys(), *saved_dict.values()]
    if isinstance(thing, list):
        saved_list = list(thing)
        restorers.append(lambda: list.__setitem__(thing, slice(None), saved_list))
        return saved_list
    if isinstance(thing, set):
        saved_set = set(thing)
        restorers.append(lambda: (set.clear(thing), set.update(thing, saved_set)))
        return list(saved_set)
    if type(thing) is bytearray:
        saved_bytes = bytes(thing)
        restorers.append(lambda: thing.__setitem__(slice(None), saved_bytes))
        return []
    if type(thing) is array.array:
        saved_array = array.array(thing.typecode, thing)
        restorers.append(lambda: thing.__setitem__(slice(None), saved_array))
        return []
    has_dict = hasattr(thing, "__dict__")
    slots = [name for cls in type(thing).__mro__ for name in getattr(cls, "__slots__", ())
             if name not in ("__dict__", "__weakref__")]
    if has_dict and type(thing).__module__.split(".")[0] == "xsplice_emu" or slots and not has_dict:
        followed: list[Any] = [vars(thing)] if has_dict else []
        values = {name: getattr(thing, name) for name in slots if hasattr(thing, name)}
        restorers += [lambda name=name, value=value: object.__setattr__(thing, name, value)  # type: ignore[misc]
                      for name, value in values.items()]
        return followed + list(values.values())
    raise NotRewindable(f"cannot put back a {type(thing).__module__}.{type(thing).__qualname__}")
