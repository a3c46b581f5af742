"""Boot, timer, determinism and the platform contract."""

from __future__ import annotations

import importlib
import io
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from elftools.elf.elffile import ELFFile
from rich.console import Console

from xsplice_emu import Machine, MachineConfig, load_image, platform
from xsplice_emu.arch import x86_64
from xsplice_emu.arch.x86_64 import IDT_GATE, INTERRUPT_FRAME
from xsplice_emu.cli import main
from xsplice_emu.errors import ImageError
from xsplice_emu.machine import PS_PER_NS, VcpuState
from xsplice_emu.machine.spec import CALL_SLOT

FIRMWARE_INCLUDE = Path(__file__).resolve().parent.parent / "firmware" / "include"
PLATFORM_H = FIRMWARE_INCLUDE / "platform.h"


@pytest.mark.parametrize("vcpus", [1, 8, 72])
def test_every_vcpu_boots_and_prints(boot, vcpus):
    """Every vCPU reaches the scheduler and says so on the console, tagged with its id."""
    machine = boot(vcpus, ms=3)
    up = {line.vcpu for line in machine.console.lines if line.text == f"cpu{line.vcpu}: up"}
    assert up == set(range(vcpus))
    assert all(v.state is not VcpuState.WAITING_FOR_START for v in machine.vcpus)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux's /proc tells a process's memory")
def test_a_72_vcpu_machine_keeps_its_translated_code_in_small_pages():
    """Unicorn asks for transparent huge pages for each instance's translated code: 72 vCPUs booted in a fresh
    process use no huge page (the process has them off) and stay under 200 MB resident (about 265 with them)."""
    script = ("from xsplice_emu import Machine, MachineConfig, builtin_firmware, load_image\n"
              "machine = Machine(load_image(builtin_firmware()), config=MachineConfig(vcpus=72))\n"
              "machine.run_for(1_000_000)\n"
              "print(open('/proc/self/status').read())\n")
    status = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["THP_enabled"].strip() == "0"
    assert int(fields["VmHWM"].split()[0]) < 200 * 1024


def test_the_images_symbols_are_those_pyelftools_reads(image):
    """The symbols read with struct are pyelftools' own: every named function, object and no-type symbol with its
    address, size, kind, binding and (for statics) the file before it."""
    with image.path.open("rb") as stream:
        symtab = ELFFile(stream).get_section_by_name(".symtab")
        expected, current_file = [], None
        for sym in symtab.iter_symbols():
            kind, local = sym["st_info"]["type"], sym["st_info"]["bind"] == "STB_LOCAL"
            if kind == "STT_FILE":
                current_file = sym.name
            elif kind in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE") and sym.name and sym["st_shndx"] != "SHN_UNDEF":
                expected.append((sym.name, sym["st_value"], sym["st_size"], kind[4:].lower(), local,
                                 current_file if local else None))
    assert [(s.name, s.address, s.size, s.kind, s.is_local, s.file) for s in image.symbols] == expected
    assert any(s.is_local and s.file for s in image.symbols) and len(expected) > 100


def test_a_malformed_firmware_elf_is_a_one_line_error(image, tmp_path):
    """Firmware files mutated past what pyelftools parses (offsets beyond any file, structures cut short, a
    build-id note of another owner): each loads or is refused with ImageError, never another exception; at the
    command line one such file is one line naming it, exit 1 (as a file that is no ELF at all)."""
    data = image.path.read_bytes()
    with image.path.open("rb") as stream:
        header = ELFFile(stream).header
    rng = random.Random(5)
    for case in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            where = rng.choice([rng.randrange(len(mutated)), rng.randrange(64),
                                header["e_phoff"] + rng.randrange(header["e_phnum"] * header["e_phentsize"]),
                                header["e_shoff"] + rng.randrange(header["e_shnum"] * header["e_shentsize"])])
            mutated[where % len(mutated)] = rng.randrange(256)
        path = tmp_path / f"case{case}.elf"
        path.write_bytes(mutated[:rng.randrange(len(mutated))] if rng.random() < 0.2 else mutated)
        try:
            load_image(path)
        except ImageError:
            pass
    bad = bytearray(data)
    bad[header["e_phoff"] + 8:header["e_phoff"] + 16] = (2**63 + 5).to_bytes(8, "little")  # p_offset
    (tmp_path / "far.elf").write_bytes(bad)
    result = CliRunner().invoke(main, ["boot", "--firmware", str(tmp_path / "far.elf"), "--vcpus", "1"])
    assert (result.exit_code, result.output.strip().count("\n")) == (1, 0)
    assert "far.elf: not a well-formed ELF file (an offset or size beyond any file)" in result.output


def test_workload_reports_the_version_functions(boot):
    """Each vCPU's workload calls the version functions and prints what it got."""
    machine = boot(4, ms=4)
    for cpu in range(4):
        printed = [line.text for line in machine.console.lines if line.vcpu == cpu]
        assert f"cpu{cpu}: xen version 4.7-unstable" in printed


@pytest.mark.parametrize("timer_hz", [1000, 4000])
def test_timer_ticks_at_the_configured_rate(boot, image, timer_hz):
    """Over 20 virtual ms, each vCPU's timer handler runs timer_hz * 0.02 times (give or take one)."""
    machine = boot(3, ms=20, timer_hz=timer_hz)
    ticks = image.address("timer_ticks")
    expected = timer_hz * 20 // 1000
    for cpu in range(3):
        assert abs(machine.memory.read_u64(ticks + 8 * cpu) - expected) <= 1


def test_idle_vcpus_halt_and_cost_no_instructions(boot):
    """An idle machine spends most of its virtual time halted, not emulating."""
    machine = boot(4, ms=20)
    for vcpu in machine.vcpus:
        assert vcpu.halted_ps > 0.8 * machine.now_ps
    assert machine.now_ns == 20_000_000


def test_same_seed_same_run(boot):
    """The same seed and options give a byte-identical console and trace digest."""
    a, b = boot(8, seed=7, ms=5), boot(8, seed=7, ms=5)
    assert a.console.text() == b.console.text()
    assert a.trace.digest == b.trace.digest
    assert [v.instructions for v in a.vcpus] == [v.instructions for v in b.vcpus]


def test_different_seed_different_interleaving(boot):
    """Another seed changes the order in which vCPUs' lines appear."""
    orders = {tuple(line.vcpu for line in boot(8, seed=seed, ms=5).console.lines) for seed in (1, 2, 3)}
    assert len(orders) > 1


def _defines(header: Path) -> dict[str, int]:
    """The `#define NAME number` lines of a firmware header."""
    return {name: int(value, 0) for name, value in
            re.findall(r"^#define\s+(\w+)\s+(0x[0-9a-fA-F]+|\d+)\b", header.read_text(), re.M)}


def test_platform_header_matches_python():
    """firmware/include/platform.h and xsplice_emu/platform.py (its ISA facts: arch/x86_64.py) hold the same
    numbers."""
    for module, least in ((platform, 20), (x86_64, 6)):
        shared = {name: value for name, value in _defines(PLATFORM_H).items() if hasattr(module, name)}
        assert len(shared) >= least, module.__name__
        for name, value in shared.items():
            assert getattr(module, name) == value, name


def test_guest_layouts_match_the_firmware_headers():
    """The call slot, IDT gate and interrupt frame layouts are the sizes and offsets the firmware's C checks."""
    defines = _defines(PLATFORM_H) | _defines(FIRMWARE_INCLUDE / "asm" / "regs.h")
    assert CALL_SLOT.size == defines["CALL_SLOT_SIZE"]
    for field in ("result", "state", "seq"):
        assert CALL_SLOT.offset(field) == defines[f"CALL_SLOT_{field.upper()}"], field
    assert IDT_GATE.size == defines["IDT_GATE_SIZE"]
    assert INTERRUPT_FRAME.size == defines["INTERRUPT_FRAME_SIZE"] == defines["UREGS_SIZE"] - defines["UREGS_rip"]
    for field in ("rflags", "rsp"):
        assert INTERRUPT_FRAME.offset(field) == defines[f"UREGS_{field}"] - defines["UREGS_rip"], field


def test_boot_prints_console_lines_in_virtual_time_order():
    """`boot` shows every vCPU's lines sorted by their virtual time stamps."""
    result = CliRunner().invoke(main, ["boot", "--vcpus", "4", "--ms", "1"])
    stamps = [float(line.split("]")[0].lstrip("[")) for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(stamps) > 4 and stamps == sorted(stamps)


def test_a_long_boot_at_a_terminal_shows_progress_and_runs_the_same(image, monkeypatch):
    """At a terminal, `boot` of 60 ms draws a progress bar; the run (its digest) is the same as without one."""
    boot_module = importlib.import_module("xsplice_emu.cli.boot")  # the module, not the command it defines
    screen = io.StringIO()
    monkeypatch.setattr(boot_module, "out", Console(file=screen, force_terminal=True, width=100))
    shown, plain = Machine(image, config=MachineConfig(vcpus=2)), Machine(image, config=MachineConfig(vcpus=2))
    boot_module._run(shown, 60_000_000)
    plain.run_for(60_000_000)
    assert "booting" in screen.getvalue()
    assert shown.trace.digest == plain.trace.digest


def test_a_firmware_rewritten_at_the_same_path_is_read_anew(image, tmp_path):
    """load_image gives back the image it read when the file's bytes are the same, and the new one once the file
    at that path was rewritten (here: another build-id)."""
    path = tmp_path / "firmware.elf"
    data = image.path.read_bytes()
    path.write_bytes(data)
    first = load_image(path)
    assert load_image(path) is first and first.build_id == image.build_id
    other_id = bytes(byte ^ 0xff for byte in image.build_id)
    path.write_bytes(data.replace(image.build_id, other_id))
    assert load_image(path).build_id == other_id


def test_emulate_stops_at_its_address_and_later_slices_run_past_it(boot):
    """`emulate` runs a function up to its `ret` (rax holds what it computed there); the address is no exit after
    it: a call of the same function runs its `ret` and returns to the caller."""
    machine = boot(1, ms=1)
    vcpu, start = machine.vcpus[0], machine.address("xen_major_version")
    ret = start + 5  # mov $4, %eax; ret
    snapshot = vcpu.snapshot()
    vcpu.write(vcpu.arch.registers.result, 0)
    vcpu.flush(start, ret + 1)  # the boot ran it: an exit only stops code translated while it is set
    vcpu.emulate(start, ret)
    assert (vcpu.current_pc(), vcpu.read(vcpu.arch.registers.result)) == (ret, 4)
    machine.restore(vcpu, snapshot)
    assert machine.call(0, "xen_major_version") == 4


def test_a_vcpu_parked_by_its_question_stops_where_it_asks_again(boot):
    """`park` from the port question lets the rest of the question's block run (its dispatch jump): the parked vCPU
    stops at the question, where WAIT leads, not inside the block (Unicorn would then translate that block's tail
    alone on every vCPU); released, it asks from there."""
    machine = boot(1, ms=1)
    machine.memory.write_u8(machine.image.address("xsplice_work_to_do"), 1)  # vCPU 0 has work: it asks
    asked, parked = [], []

    def answer(vcpu) -> int:
        asked.append(vcpu.current_pc())
        if len(asked) == 1:
            machine.park(vcpu)
            return platform.XSPLICE_WAIT
        return platform.XSPLICE_RETURN

    def release() -> None:
        vcpu = machine.vcpus[0]
        parked.append((vcpu.state, vcpu.pc))
        machine.release(0, at_ps=machine.now_ps)
    machine.answer_port(platform.PORT_XSPLICE, answer)
    machine.add_alarm(machine.now_ps + 10_000 * PS_PER_NS, release)
    assert machine.call(0, "check_for_xsplice_work") == platform.XSPLICE_RETURN
    question = asked[0]
    assert machine.describe(question).startswith("check_for_xsplice_work+")
    assert parked == [(VcpuState.PARKED, question)] and asked == [question, question]


def test_check_for_xsplice_work_does_what_each_answer_says(boot):
    """Each answer to check_for_xsplice_work's question takes its own path (a table of one block each): IRQ_ON
    and IRQ_OFF flip the vCPU's interrupt flag before the next question, SERIALISE and the unused answers 6 and 7
    just ask again, WAIT asks again, RETURN returns to the caller (the answer is what is left in rax)."""
    machine = boot(1, ms=1)
    machine.memory.write_u8(machine.image.address("xsplice_work_to_do"), 1)  # vCPU 0 has work: it asks
    answers = iter([platform.XSPLICE_IRQ_ON, 6, platform.XSPLICE_IRQ_OFF, 7, platform.XSPLICE_SERIALISE,
                    platform.XSPLICE_WAIT, platform.XSPLICE_RETURN])
    interrupts_on = []

    def answer(vcpu) -> int:
        interrupts_on.append(vcpu.read_interrupt_flag())
        return next(answers)
    machine.answer_port(platform.PORT_XSPLICE, answer)
    assert machine.call(0, "check_for_xsplice_work") == platform.XSPLICE_RETURN
    assert interrupts_on == [False, True, True, False, False, False, False]  # (a call runs in its IPI's handler)


def test_check_for_xsplice_work_without_work_asks_nothing(boot):
    """Xen's fast path: with this CPU's xsplice_work_to_do clear, check_for_xsplice_work returns without a question
    (reset_stack_and_jump calls it on every task switch); with it set, the CPU asks, once here (the answer clears
    the flag, as the controller does before RETURN)."""
    machine = boot(2, ms=1)
    flags = machine.image.address("xsplice_work_to_do")
    asked = []

    def answer(vcpu) -> int:
        asked.append(vcpu.index)
        machine.memory.write_u8(flags + vcpu.index, 0)
        return platform.XSPLICE_RETURN
    machine.answer_port(platform.PORT_XSPLICE, answer)
    machine.call(1, "check_for_xsplice_work")
    machine.run_for(1_000_000)
    assert asked == []
    machine.memory.write_u8(flags + 1, 1)
    machine.call(1, "check_for_xsplice_work")
    machine.run_for(1_000_000)
    assert asked == [1]
