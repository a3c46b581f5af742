"""The numbers the firmware and the machine agree on (see firmware/ABI.md).

`firmware/include/platform.h` holds the same values for C; a test checks
that the two agree. Its ISA facts (the NMI vector, the GDT selectors, the
saved-register offsets) are the architecture's: `arch/x86_64.py`.
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

CALL_SLOTS = 8
CALL_SLOT_SIZE = 48
CALL_SLOT_FREE = 0
CALL_SLOT_PENDING = 1
CALL_SLOT_RUNNING = 2
CALL_SLOT_DONE = 3
