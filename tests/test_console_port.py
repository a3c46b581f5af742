"""The debug console's port answered in C (machine/native/console_port.c): lines reach the host whole."""

from __future__ import annotations

import pytest

from xsplice_emu import builtin_firmware
from xsplice_emu.authoring.build import build_payload
from xsplice_emu.machine.native import CONSOLE_BYTES
from xsplice_emu.tracing.kinds import EventKind

PRINTER = """
#include <xsplice_payload.h>
static const char minor[] = "xen_minor_version";
static inline void out(unsigned char byte) { asm volatile("outb %0, %1" : : "a"(byte), "Nd"((unsigned short)0xe9)); }
unsigned int printer_minor(void) { return 7; }
unsigned long print_line(unsigned long byte, unsigned long count)
{
    for ( unsigned long i = 0; i < count; i++ )
        out(byte);
    out('\\n');
    return count;
}
LIVEPATCH_FUNC(printer_func) = {
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = minor, .new_addr = printer_minor, .old_addr = xen_minor_version,
    .new_size = XSPLICE_NEW_SIZE(printer_minor), .old_size = XSPLICE_OLD_SIZE(xen_minor_version),
};
"""


@pytest.fixture
def printing(patching, tmp_path):
    """A booted 4-vCPU machine with print_line(byte, count) loaded: it prints `count` bytes, then a newline."""
    machine, livepatch = patching(4)
    source = tmp_path / "printer.c"
    source.write_text(PRINTER)
    livepatch.upload("printer", build_payload(source, tmp_path / "printer.livepatch", firmware=builtin_firmware())
                     .read_bytes())
    return machine, livepatch.get("printer").loaded.new_symbols["print_line"]


@pytest.mark.parametrize("count", [0, 5, CONSOLE_BYTES - 1, CONSOLE_BYTES, CONSOLE_BYTES + 1, 3 * CONSOLE_BYTES])
def test_a_line_arrives_whole_whatever_its_length(printing, count):
    """A line shorter or longer than the port's buffer reaches the console once, whole, from its vCPU, with one
    CONSOLE event at a time within the call."""
    machine, print_line = printing
    events = len(machine.trace.events)
    before_ns = machine.now_ns
    assert machine.call(2, print_line, ord("x"), count) == count
    printed = [event for event in machine.trace.events[events:] if event.kind is EventKind.CONSOLE]
    assert [(event.vcpu, event.fields["text"]) for event in printed] == [(2, "x" * count)]
    assert before_ns <= printed[0].time_ns <= machine.now_ns
    assert machine.console.lines[-1].text == "x" * count and machine.console.lines[-1].vcpu == 2


def test_lines_printed_by_vcpus_at_once_stay_apart(printing):
    """Four vCPUs printing lines longer than the buffer at the same time: each line holds its own vCPU's bytes."""
    machine, print_line = printing
    lines = len(machine.console.lines)
    for cpu in range(4):
        machine.post_call(cpu, print_line, ord("a") + cpu, 2 * CONSOLE_BYTES + cpu)
    machine.run_for(2_000_000)
    printed = sorted((line.vcpu, line.text) for line in machine.console.lines[lines:])
    assert printed == [(cpu, chr(ord("a") + cpu) * (2 * CONSOLE_BYTES + cpu)) for cpu in range(4)]
