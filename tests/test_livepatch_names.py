"""Payload names are bytes, as in Xen: 1..127 of them, any but NUL (issue 18, defects 2 and 3)."""

from __future__ import annotations

import errno
import os

import pytest
from click.testing import CliRunner
from fuzzing import observable
from helpers import PAYLOADS, Served, extra_versions, name_in_guest, upload

from xsplice_emu.authoring.build import build_payload
from xsplice_emu.cli import main
from xsplice_emu.control.session import Session
from xsplice_emu.errors import LivepatchError, MachineError
from xsplice_emu.livepatch import Action, PayloadState
from xsplice_emu.provision.firmware import builtin_firmware
from xsplice_emu.server import Client, Op, Request
from xsplice_emu.tracing.kinds import EventKind
from xsplice_emu.tracing.reader import TraceFile

HELLO = "xen_hello_world.livepatch"
FF = os.fsdecode(b"\xff")
"""The name `$'\\xff'` as a program's argv gives it to Python."""
LOAD_HOOKS = 495
"""Load hooks of the `crowded` payload: its state block, 64 + 8 * 495 bytes before the name, ends 7 bytes short
of a page with a name of 64 characters and its NUL, 56 bytes past it with one of 127 bytes."""
CROWDED = f"""
#include <xsplice_payload.h>
static void noop(void) {{ }}
static livepatch_loadcall_t *const hooks[{LOAD_HOOKS}]
    __attribute__((section(".livepatch.hooks.load"), used)) = {{ [0 ... {LOAD_HOOKS - 1}] = noop }};
"""


def test_cli_uploads_a_non_utf8_name_and_lists_it_escaped(payloads):
    """`livepatch upload $'\\xff' FILE list`: accepted as Xen accepts it (exit 0), listed as `\\xff`."""
    result = CliRunner().invoke(main, ["livepatch", "--boot-ms", "1", "upload", FF, str(PAYLOADS / HELLO), "list"])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 0
    assert f"Uploading {PAYLOADS / HELLO}... completed\n" in result.stdout
    assert result.stdout.endswith("\\xff".ljust(40) + "| CHECKED    | LIVEPATCH_RULEZ\n")


def test_cli_escapes_control_characters_of_a_name(payloads):
    """A name with an escape sequence and a line break is one list row, its control characters as `\\xNN`."""
    name = "evil\x1b[2J\nrow"
    result = CliRunner().invoke(main, ["livepatch", "--boot-ms", "1", "upload", name, str(PAYLOADS / HELLO), "list"])
    assert result.exit_code == 0
    assert result.stdout.endswith("evil\\x1b[2J\\nrow".ljust(40) + "| CHECKED    | LIVEPATCH_RULEZ\n")
    assert "\x1b" not in result.output


def test_cli_refuses_64_two_byte_characters_with_einval(payloads):
    """64 x 'é' is 128 bytes, one too many with the NUL: Xen's EINVAL, exit 1."""
    result = CliRunner().invoke(main, ["livepatch", "--boot-ms", "1", "upload", "é" * 64, str(PAYLOADS / HELLO)])
    assert result.exit_code == 1
    assert result.stdout.endswith("failed\n")
    assert "Error 22: Invalid argument\n" in result.stderr


def test_serve_keeps_a_name_of_bytes_ff_fe_and_answers_on(payloads):
    """An UPLOAD named by the bytes ff fe: accepted, LIST and GET give back those bytes, the server goes on."""
    served = Served(Session(vcpus=2, seed=1, boot_ms=1, base=payloads))
    name = b"\xff\xfe".decode(errors="surrogateescape")
    try:
        with Client(served.path) as client:
            assert client.call(Request(Op.UPLOAD, name, data=(PAYLOADS / HELLO).read_bytes())).rc == 0
            listed = client.call(Request(Op.LIST))
            assert [entry.name.encode(errors="surrogateescape") for entry in listed.entries] == [b"\xff\xfe"]
            assert client.call(Request(Op.GET, name)).state == PayloadState.CHECKED.value
        assert served.failure is None and served.thread.is_alive()
    finally:
        served.stop()


def test_names_cost_no_payload_memory(patching, payloads):
    """100 uploads of a non-UTF-8 name, each unloaded, and 100 refused names (a lone surrogate stands for no
    byte): the guest memory in use, the payload list and the free payload memory end as they began."""
    machine, livepatch = patching(2)
    before = observable(livepatch)
    data = (PAYLOADS / HELLO).read_bytes()
    for _ in range(100):
        livepatch.upload(FF, data)
        livepatch.action(FF, Action.UNLOAD)
        with pytest.raises(LivepatchError) as refused:
            livepatch.upload("\ud800", data)
        assert refused.value.errno == errno.EINVAL
    assert observable(livepatch) == before


@pytest.mark.parametrize("name, size", [("é" * 64, 128), ("x" * 128, 128), ("", 0), ("a\0b", 3)],
                         ids=["64 e-acute", "128 x", "empty", "NUL"])
def test_names_xen_refuses_change_nothing(patching, payloads, name, size):
    """Xen's limit counts bytes, NUL included (XEN_LIVEPATCH_NAME_SIZE 128): these are EINVAL, nothing moves."""
    machine, livepatch = patching(2)
    before = observable(livepatch)
    with pytest.raises(LivepatchError) as refused:
        upload(livepatch, name, HELLO)
    assert refused.value.errno == errno.EINVAL
    assert f"{size} bytes" in refused.value.reason
    assert observable(livepatch) == before


def test_a_127_byte_name_of_two_byte_characters_overwrites_no_other_payload(patching, payloads, tmp_path):
    """63 x 'é' and an 'x' (127 bytes): accepted, stored whole in the payload's own state block, and hello_world,
    uploaded right after that block, still applies: every vCPU returns "Hello World"."""
    machine, livepatch = patching(4)
    source = tmp_path / "crowded.c"
    source.write_text(CROWDED)
    crowded = build_payload(source, tmp_path / "crowded.livepatch", firmware=builtin_firmware()).read_bytes()
    livepatch.upload("first", crowded)
    upload(livepatch, "hello", HELLO)
    livepatch.action("first", Action.UNLOAD)  # a hole just big enough for `crowded` and a one-page state block
    name = "é" * 63 + "x"
    livepatch.upload(name, crowded)
    assert name_in_guest(livepatch, name) == name.encode()
    assert livepatch.run_action("hello", Action.APPLY).rc == 0
    assert extra_versions(machine) == {"Hello World"}


def test_a_name_keeps_its_bytes_in_the_trace_and_the_summary_escapes_them(payloads, tmp_path):
    """The trace holds the name's exact bytes; `trace summary` shows them escaped on the action's title line."""
    name, trace = os.fsdecode(b"\xff\x1b[31mred\n"), tmp_path / "run.jsonl"
    ran = CliRunner().invoke(main, ["livepatch", "--boot-ms", "1", "--trace", str(trace),
                                    "upload", name, str(PAYLOADS / HELLO), "apply", name])
    assert ran.exit_code == 0
    [uploaded] = [event for event in TraceFile.open(trace) if event.kind == EventKind.UPLOAD]
    assert os.fsencode(uploaded.fields["payload"]) == b"\xff\x1b[31mred\n"
    summary = CliRunner().invoke(main, ["trace", "summary", str(trace)])
    assert summary.exit_code == 0
    assert summary.stdout.startswith("#1 apply \\xff\\x1b[31mred\\n\n") and "\x1b" not in summary.stdout


def test_an_upload_failing_after_its_memory_is_taken_gives_it_all_back(patching, payloads, monkeypatch):
    """A host-side failure while the payload is written (the machine refusing to protect its text): the error
    comes out, and the guest memory in use, the payload list and the free payload memory are as before."""
    machine, livepatch = patching(2)
    before = observable(livepatch)
    protect = machine.protect
    calls = iter(range(1_000))

    def failing_once(*args, **options) -> None:
        if next(calls) == 0:
            raise MachineError("no protection today")
        protect(*args, **options)
    monkeypatch.setattr(machine, "protect", failing_once)
    with pytest.raises(MachineError):
        upload(livepatch, "hello", HELLO)
    assert observable(livepatch) == before
    monkeypatch.undo()
    upload(livepatch, "hello", HELLO)
    assert livepatch.run_action("hello", Action.APPLY).rc == 0
    assert extra_versions(machine) == {"Hello World"}
