"""Guest faults stop the run with one clear error; the host surface works."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from xsplice_emu import GuestFault, MachineError
from xsplice_emu.cli import main


@pytest.mark.parametrize("kind, what, insn", [
    (0, "#DE divide error", "div"),
    (1, "UC_ERR_INSN_INVALID", "ud2"),
    (2, "UC_ERR_READ_UNMAPPED", "mov"),
    (3, "#BP breakpoint", ""),
    (4, "UC_ERR_WRITE_PROT", "mov"),
])
def test_guest_fault_names_vcpu_rip_instruction_and_console(boot, image, kind, what, insn):
    """A fault names the vCPU, the RIP with its symbol, the instruction and the last console line."""
    machine = boot(2, ms=1.5)
    with pytest.raises(GuestFault) as caught:
        machine.call(1, "call_fault", kind)
    message = str(caught.value)
    assert caught.value.vcpu == 1
    assert message.startswith("vCPU 1 fault: ")
    assert what in message
    assert f"{caught.value.pc:#x} <call_fault" in message
    assert insn in message.split(">: ", 1)[1]
    assert "last console line: " in message
    assert "\n" not in message


def test_executing_data_faults_where_it_jumped(boot, image):
    """Data pages are not executable (NX): a call into them is the CPU's page fault there, which the firmware's
    handler reports; the run stops at that address."""
    machine = boot(2, ms=1.5)
    with pytest.raises(GuestFault) as caught:
        machine.call(1, "call_fault", 5)
    address = image.address("busy_flag")
    assert f"exception #PF page fault at {address:#x}" in str(caught.value)
    assert f"FATAL TRAP: vector 14, rip {address:#x}" in str(caught.value)
    assert caught.value.pc == address


def test_call_returns_a_guest_functions_value(boot, image):
    """The host can run a firmware function on a chosen vCPU and read its result."""
    machine = boot(3, ms=1.5)
    assert machine.call(2, "xen_major_version") == 4
    assert machine.memory.read_cstring(machine.call(1, "xen_extra_version")) == "-unstable"


def test_host_write_needs_invalidation_on_every_vcpu(boot, image):
    """Rewritten code stays stale in each vCPU's translation cache until invalidated."""
    machine = boot(3, ms=1.5)
    major = image.symbol("xen_major_version")
    assert [machine.call(cpu, "xen_major_version") for cpu in range(3)] == [4, 4, 4]
    machine.memory.write(major.address, bytes.fromhex("b805000000c3"))  # mov eax, 5; ret
    assert [machine.call(cpu, "xen_major_version") for cpu in range(3)] == [4, 4, 4]
    machine.invalidate_code(major.address, major.address + 6)
    assert [machine.call(cpu, "xen_major_version") for cpu in range(3)] == [5, 5, 5]


def test_unknown_vcpu_is_refused(boot):
    """Asking for a vCPU the machine does not have is a clear error."""
    machine = boot(2, ms=0.5)
    with pytest.raises(MachineError, match="no vCPU 5"):
        machine.call(5, "xen_major_version")


def test_cli_boot_prints_console_and_summary():
    """`xsplice-emu boot` prints every vCPU's lines and the run's figures."""
    result = CliRunner().invoke(main, ["boot", "--vcpus", "3", "--seed", "1", "--ms", "3"])
    assert result.exit_code == 0, result.output
    for cpu in range(3):
        assert f"cpu{cpu}: up" in result.output
    for label in ("virtual time", "3.000 ms", "instructions per vCPU", "host time", "guest MIPS"):
        assert label in result.output


def test_cli_bad_firmware_is_one_line_error(tmp_path):
    """A firmware path that is not an ELF gives one error line and exit 1."""
    bogus = tmp_path / "bogus.elf"
    bogus.write_bytes(b"not an elf")
    result = CliRunner().invoke(main, ["boot", "--firmware", str(bogus)])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: ") and str(bogus) in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_bad_vcpu_count_is_usage_error():
    """257 vCPUs is refused before anything runs, with exit 2."""
    result = CliRunner().invoke(main, ["boot", "--vcpus", "257"])
    assert result.exit_code == 2
    assert "257 is not in the range 1..256" in result.output


def test_a_contained_call_that_faults_leaves_the_machine_running(boot, image):
    """A fault inside a contained call is raised to the host with the vCPU put back where the IPI found it:
    the same vCPU then answers the next call, and time goes on."""
    machine = boot(2, ms=1.5)
    with pytest.raises(GuestFault) as caught:
        machine.call_contained(1, "call_fault", 2)
    assert caught.value.vcpu == 1 and "UC_ERR_READ_UNMAPPED" in str(caught.value)
    assert machine.call(1, "xen_major_version") == 4
    machine.run_for(2_000_000)
    assert machine.call(1, "xen_minor_version") == 7


def test_a_contained_call_that_never_returns_is_abandoned(boot, image):
    """A contained call still spinning (IRQs off) at its timeout is abandoned: MachineError, and the vCPU runs
    its own code again (it takes the timer and later calls)."""
    machine = boot(2, ms=1.5)
    with pytest.raises(MachineError, match="did not finish call_stall_irqs_off"):
        machine.call_contained(1, "call_stall_irqs_off", 10**12, timeout_ns=1_000_000)
    assert machine.call(1, "xen_major_version") == 4


def test_a_page_made_read_only_faults_the_next_store_of_a_vcpu_that_wrote_it(boot, image):
    """Protecting a page a vCPU has been storing into takes effect at its next store, whatever it had translated."""
    machine = boot(2, ms=1.5)
    page = image.resolve("busy_buf") + 4096  # busy_buf[1]: a page of its own that only vCPU 1 writes
    machine.call(1, "call_set_busy", 1)
    machine.run_for(100_000)
    machine.protect(page, page + 4096, read=True)
    with pytest.raises(GuestFault) as caught:
        machine.run_for(100_000)
    assert caught.value.vcpu == 1
    assert "UC_ERR_WRITE_PROT" in str(caught.value)
