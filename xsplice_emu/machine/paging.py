"""What guest code may do with each page of RAM, kept in page tables rather than in Unicorn's memory regions.

Unicorn checks permissions per memory region, and every region it creates (a split by `mem_protect`) costs more
than the last as regions pile up (~1 ms with 200, 55 ms with 2,000, on every vCPU): protecting payload pages by
region made each upload dearer than the one before. Instead every vCPU runs with paging on, over one set of page
tables in a host buffer that no guest address reaches, and sees RAM in its physical address space once per set of
permissions, every copy a region onto the same host memory: read+write at RAM's own addresses, one copy for each
UC_PROT_* combination, and a read-only copy at TEXT_ALIAS_OFFSET for the text alias over code (so the store hook
there sees the alias's own addresses). A page's entries point into the copy its permissions pick: protecting
pages rewrites entries, and the vCPUs' TLBs must then be flushed, unless no page walk has gone through those
entries since they were written (their accessed bit, which the CPU sets: fresh payload memory no vCPU has touched
keeps every TLB, and the translated code it reaches through them, warm); the regions never change, so it costs
the same whatever is loaded. Unicorn raises the same errors as before (UC_ERR_WRITE_PROT, ..._UNMAPPED), but
for a fetch: the entries of pages that are not executable say so too (NX), so a fetch there is the CPU's page
fault, taken through the guest's IDT as on hardware. Unicorn needs it for speed: it keeps every store to a page
its TLB holds as executable on its slow path (it never marks such a page dirty), and without NX every store to
data or a stack was one (busy guest code ran ~35% of its time there).

No entry of RAM, its alias or a window is ever not present (Unicorn loses some page faults, unicorn-facts.md).
Other addresses map onto physical page 0, which no region maps, as they were unmapped before paging; on a machine
with a hypervisor image they are not present, a page fault, as in the hypervisor's own tables.
"""

from __future__ import annotations

import ctypes
import mmap

from unicorn import UC_PROT_ALL, UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE

from ..arch import Architecture
from ..platform import RAM_BASE, TEXT_ALIAS_OFFSET
from .memory import GuestMemory
from .spec import PAGE_SIZE

READ_WRITE = UC_PROT_READ | UC_PROT_WRITE
COPY_STRIDE = TEXT_ALIAS_OFFSET
"""Physical distance between the copies of RAM (RAM and the alias cannot be larger than it)."""
ALIAS_OVER_CODE = TEXT_ALIAS_OFFSET
"""Physical address of the read-only copy the alias maps code pages onto."""
PAGE_TABLES = (2 + UC_PROT_ALL + 1) * COPY_STRIDE
"""Physical address of the page tables, past every copy."""
HOLE = 0
"""The physical page that addresses outside the mapped ranges map onto: nothing is there."""

Mapping = tuple[int, int, int, int]
"""A vCPU's physical region: (guest physical address, host address, size, Unicorn permissions)."""


def copy_of(permissions: int) -> int:
    """Physical address of the copy of RAM with Unicorn `permissions` (UC_PROT_*)."""
    return (2 + permissions) * COPY_STRIDE


def ram_copy(permissions: int) -> int:
    """Where a RAM page with `permissions` is mapped from: RAM itself when read+write (its guard pages left out
    where a vCPU has one), else the copy with them."""
    return 0 if permissions == READ_WRITE else copy_of(permissions)


def alias_copy(permissions: int) -> int:
    """Where the alias of a RAM page with `permissions` is mapped from: read-only over code (a store into code
    faults, to be seen), read+write elsewhere (the read+write copy: no guard page left out)."""
    return ALIAS_OVER_CODE if permissions & UC_PROT_EXEC else copy_of(READ_WRITE)


class PagePermissions:
    """The page tables of every vCPU of one machine, and the permissions of each page of its RAM."""

    def __init__(self, arch: Architecture, memory: GuestMemory, *, faults_outside: bool):
        self.arch = arch
        self.memory = memory
        self._spaces = [(0, 0, memory.size), (TEXT_ALIAS_OFFSET, 0, memory.size)]
        """(virtual, physical, size) of each mapped range: RAM (from page 0, which no region maps), its alias,
        then the windows onto RAM."""
        self._spaces += [(window.virtual, window.physical, window.size) for window in memory.windows]
        tables = arch.page_tables(PAGE_TABLES, [(virtual, virtual + size) for virtual, _, size in self._spaces],
                                  hole=None if faults_outside else HOLE)
        self._entries = tables.entries
        self._entry_size = len(arch.page_entries(HOLE, 1))
        self._tables = mmap.mmap(-1, -(-len(tables.data) // PAGE_SIZE) * PAGE_SIZE,
                                 flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._tables[:len(tables.data)] = tables.data
        self._tables_address = ctypes.addressof(ctypes.c_char.from_buffer(self._tables))
        self._permissions = bytearray([READ_WRITE]) * (memory.size // PAGE_SIZE)
        self.protect(0, memory.size, READ_WRITE)

    @property
    def root(self) -> int:
        """Physical address of the page tables' root."""
        return PAGE_TABLES

    def mappings(self, *, leave_out: tuple[int, int] = (0, 0)) -> list[Mapping]:
        """The physical regions of a vCPU: RAM (without `[begin, end)`, a guard page), its copies, the tables."""
        host, size = self.memory.host_address + RAM_BASE, self.memory.size - RAM_BASE
        begin, end = leave_out
        ram = [(RAM_BASE, host, size, READ_WRITE)] if begin == end else [
            (RAM_BASE, host, begin - RAM_BASE, READ_WRITE),
            (end, host + end - RAM_BASE, RAM_BASE + size - end, READ_WRITE)]
        copies = [(copy_of(permissions) + RAM_BASE, host, size, permissions) for permissions in range(UC_PROT_ALL + 1)]
        return [*ram, (ALIAS_OVER_CODE + RAM_BASE, host, size, UC_PROT_READ), *copies,
                (PAGE_TABLES, self._tables_address, len(self._tables), UC_PROT_READ)]

    def protect(self, begin: int, end: int, permissions: int) -> bool:
        """Give the RAM pages `[begin, end)` (physical, page aligned) Unicorn `permissions` (UC_PROT_*), in RAM's
        own mapping, the windows onto it and the alias (read-only over code, read+write elsewhere). True when a
        page walk went through one of the entries this rewrote: each vCPU's TLB must then be flushed before it
        runs again (else no TLB holds a translation of these pages: fresh payload memory, say)."""
        self._permissions[begin // PAGE_SIZE:end // PAGE_SIZE] = bytes([permissions]) * ((end - begin) // PAGE_SIZE)
        accessed = False
        for index in range(len(self._spaces)):
            if index == 1:  # the alias: code is never run through it
                accessed = self._point(index, begin, end, alias_copy(permissions), executable=False) or accessed
            else:
                accessed = self._point(index, begin, end, ram_copy(permissions),
                                       executable=bool(permissions & UC_PROT_EXEC)) or accessed
        return accessed

    def of(self, page: int) -> int:
        """The Unicorn permissions (UC_PROT_*) of the RAM page at `page` (physical, page aligned)."""
        return self._permissions[page // PAGE_SIZE]

    def executable(self, begin: int, end: int) -> list[tuple[int, int]]:
        """The runs of executable pages in the RAM pages `[begin, end)` (physical, page aligned)."""
        runs: list[tuple[int, int]] = []
        for page in range(begin, end, PAGE_SIZE):
            if self._permissions[page // PAGE_SIZE] & UC_PROT_EXEC:
                if runs and runs[-1][1] == page:
                    runs[-1] = (runs[-1][0], page + PAGE_SIZE)
                else:
                    runs.append((page, page + PAGE_SIZE))
        return runs

    def open_alias(self, page: int, *, writable: bool) -> None:
        """Let the alias of the RAM page `page` be written (over code, where it is read-only), or stop it. Every
        vCPU shares the tables: open it only while one vCPU runs, and flush its TLB before and after."""
        copy = copy_of(READ_WRITE) if writable else alias_copy(self._permissions[page // PAGE_SIZE])
        self._point(1, page, page + PAGE_SIZE, copy, executable=False, keep_accessed=True)  # (others' TLBs kept)

    def _point(self, index: int, begin: int, end: int, copy: int, *, executable: bool,
               keep_accessed: bool = False) -> bool:
        """Point the entries of space `index` over the RAM pages `[begin, end)` into the copy at `copy`, `executable`
        or not; whether a page walk had gone through one of the entries it replaced. With `keep_accessed` (not every
        TLB is flushed after), the new entries say so too."""
        virtual, physical, size = self._spaces[index]
        low, high = max(begin, physical), min(end, physical + size)
        if low >= high:
            return False
        offset = self._entries[index] + (low - physical) // PAGE_SIZE * self._entry_size
        count = (high - low) // PAGE_SIZE
        accessed = self.arch.entries_accessed(self._tables[offset:offset + count * self._entry_size])
        entries = self.arch.page_entries(copy + low, count, accessed=keep_accessed and accessed,
                                         executable=executable)
        self._tables[offset:offset + len(entries)] = entries
        return accessed
