"""The numbers the firmware and the machine agree on (see firmware/ABI.md).

`firmware/include/platform.h` holds the same values for C; a test checks
that the two agree.
"""

NR_CPUS = 256
STACK_SIZE = 16384
STACK_GUARD_SIZE = 4096
RAM_BASE = 0x1000
TEXT_ALIAS_OFFSET = 0x100000000
CLOCK_PAGE = 0x10000
IMAGE_BASE = 0x100000

PORT_CONSOLE = 0xE9
PORT_FATAL = 0xF0
PORT_TIMER = 0xF1
PORT_START_CPU = 0xF2
PORT_CALL_DONE = 0xF3
PORT_XSPLICE = 0xF4
PORT_TASK = 0xF5

NMI_VECTOR = 2
PAGE_FAULT_VECTOR = 14  # how a touch of a guard page is named
LOCAL_TIMER_VECTOR = 0xF9
CALL_FUNCTION_VECTOR = 0xFB
EVENT_CHECK_VECTOR = 0xFC
FATAL_PANIC = 0xFFFF

XSPLICE_WAIT = 0
XSPLICE_RETURN = 1
XSPLICE_IRQ_OFF = 2
XSPLICE_IRQ_ON = 3
XSPLICE_SERIALISE = 4
XSPLICE_CALL = 5

UREGS_rbp = 32
UREGS_rip = 128
UREGS_rsp = 152

CALL_SLOTS = 8
CALL_SLOT_SIZE = 48
CALL_SLOT_FREE = 0
CALL_SLOT_PENDING = 1
CALL_SLOT_RUNNING = 2
CALL_SLOT_DONE = 3

CODE_SELECTOR = 0x08
DATA_SELECTOR = 0x10

EXCEPTION_NAMES = {
    0: "#DE divide error",
    1: "#DB debug",
    3: "#BP breakpoint",
    4: "#OF overflow",
    5: "#BR bound range",
    6: "#UD invalid opcode",
    7: "#NM device not available",
    8: "#DF double fault",
    10: "#TS invalid TSS",
    11: "#NP segment not present",
    12: "#SS stack fault",
    13: "#GP general protection",
    14: "#PF page fault",
    16: "#MF x87 error",
    17: "#AC alignment check",
    18: "#MC machine check",
    19: "#XM SIMD error",
}


def int_result(rax: int) -> int:
    """A guest function's C `int` result from the rax it left: the low 32 bits, signed."""
    value = rax & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value
