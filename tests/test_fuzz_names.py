"""Payload names of random bytes through each door: the library, the operator's argv and the `serve` socket
(`make fuzz` runs 2,000)."""

from __future__ import annotations

import errno
import logging
import random
from collections import Counter

import pytest
from fuzzing import check_hello, observable
from helpers import PAYLOADS, Served, name_in_guest

from xsplice_emu.control.session import Session
from xsplice_emu.control.verbs import parse_chain
from xsplice_emu.errors import ConfigError, LivepatchError, WireError
from xsplice_emu.livepatch import Action, PayloadState
from xsplice_emu.livepatch.abi import NAME_MAX
from xsplice_emu.livepatch.names import ENCODING, ERRORS
from xsplice_emu.server import Client, Op, Request
from xsplice_emu.text import printable

HELLO = "xen_hello_world.livepatch"
DOORS = ("library", "argv", "socket")
PIECES = (
    lambda rng: rng.randbytes(rng.randint(1, 8)),                                          # any bytes
    lambda rng: chr(rng.choice((0xE9, 0x3B1, 0x20AC, 0x4E2D, 0x1F600))).encode() * rng.randint(1, 8),  # 2-4 bytes
    lambda rng: b"\0",                                                                     # NUL
    lambda rng: rng.choice((b"\x80", b"\xbf\xbf", b"\xc0\x80", b"\xed\xa0\x80", b"\xf5", b"\xff\xfe", b"\xe2\x82")),
    lambda rng: rng.choice((b"\x1b[2J", b"\n", b"\r", b"\t", b"\x7f", b"\xe2\x80\xae", b"\\x41")),  # controls
    lambda rng: b"hello"[:rng.randint(1, 5)],
)
PIECE_WEIGHTS = (10, 10, 1, 10, 10, 10)


def draw_name(rng: random.Random) -> bytes:
    """0..300 bytes (mostly within Xen's limit, often at it) of pieces: random bytes, multi-byte UTF-8 (cut
    anywhere), invalid UTF-8, control characters and escape sequences, now and then a NUL."""
    length = rng.choice((rng.randint(0, 300), rng.randint(1, NAME_MAX - 1),
                         rng.choice((0, 1, NAME_MAX - 2, NAME_MAX - 1, NAME_MAX, NAME_MAX + 1))))
    name = b""
    while len(name) < length:
        name += rng.choices(PIECES, weights=PIECE_WEIGHTS)[0](rng)
    return name[:length]


def xen_accepts(name: bytes) -> bool:
    """Xen's verify_name: 1..127 bytes and the NUL that ends them."""
    return 0 < len(name) < NAME_MAX and b"\0" not in name


def one_line(text: str) -> bool:
    """Nothing in `text` but printable characters: no control, no line break, no undecodable byte."""
    return printable(text) == text


class NameFuzzer:
    """Each name goes through one door; a refused one must change nothing, an accepted one must come back as the
    same bytes from the library, the guest's descriptor and the socket's LIST, then unload to where it began."""

    def __init__(self, served: Served, *, seed: int):
        self.served, self.session, self.livepatch = served, served.session, served.session.livepatch
        self.rng = random.Random(seed)
        self.hello = (PAYLOADS / HELLO).read_bytes()
        self.client = Client(served.path)
        self.counts: Counter[str] = Counter()
        self.findings: list[str] = []

    def run(self, cases: int) -> None:
        try:
            for case in range(cases):
                name, door = draw_name(self.rng), self.rng.choice(DOORS)
                if door == "argv":
                    name = name.replace(b"\0", b"")  # an argv word ends at its NUL
                try:
                    self._case(name, door)
                except Exception as exc:  # a host exception: the finding, and the case it came from
                    self.findings.append(f"case {case} {door} {name!r}: {type(exc).__name__}: {exc}")
                    return
        finally:
            self.client.close()

    def _case(self, name: bytes, door: str) -> None:
        text = name.decode(ENCODING, ERRORS)
        before = observable(self.livepatch)
        accepted = getattr(self, f"_{door}")(text)
        verdict = f"{door} {'accepted' if accepted else 'refused'}"
        self.counts[verdict] += 1
        if accepted != xen_accepts(name):
            self.findings.append(f"{verdict} {name!r}, Xen does not")
        if not accepted:
            if observable(self.livepatch) != before:
                self.findings.append(f"{verdict} {name!r} but changed guest memory, the list or free memory")
            return
        listed = [entry.name.encode(ENCODING, ERRORS) for entry in self.client.call(Request(Op.LIST)).entries]
        came_back = ([p.name.encode(ENCODING, ERRORS) for p in self.livepatch.list()], listed,
                     name_in_guest(self.livepatch, text), self.client.call(Request(Op.GET, text)).state)
        if came_back != ([name], [name], name, PayloadState.CHECKED.value):
            self.findings.append(f"{verdict} {name!r} came back as {came_back}")
        self.livepatch.action(text, Action.UNLOAD)
        if observable(self.livepatch) != before:
            self.findings.append(f"{verdict} {name!r}: unloading it did not give everything back")
        check_hello(self.livepatch, self.hello)

    def _library(self, text: str) -> bool:
        try:
            self.livepatch.upload(text, self.hello)
        except LivepatchError as exc:
            self._check_line(exc.reason, exc.errno == errno.EINVAL)
            return False
        return True

    def _argv(self, text: str) -> bool:
        try:
            upload, listing = parse_chain(["upload", text, HELLO, "list"])
        except ConfigError as exc:  # a name the command line takes for an option: the CLI's exit 2
            self._check_line(str(exc), text.startswith("-"))
            return False
        outcome = self.session.command(upload)
        if outcome.exit_code:
            self._check_printed(outcome.text, outcome.errno == errno.EINVAL)
            return False
        shown = self.session.command(listing).text
        self._check_printed(shown, f"\n{printable(text):<40}| CHECKED" in shown)
        return True

    def _socket(self, text: str) -> bool:
        try:
            rc = self.client.call(Request(Op.UPLOAD, text, data=self.hello)).rc
        except WireError:  # longer than the wire's name field: the server drops the connection, as it logs
            if len(text.encode(ENCODING, ERRORS)) <= NAME_MAX:
                self.findings.append(f"socket UPLOAD {text!r}: connection dropped")
            self.client.close()
            self.client = Client(self.served.path)
            return False
        if rc not in (0, -errno.EINVAL):
            self.findings.append(f"socket UPLOAD {text!r}: rc {rc}")
        return rc == 0

    def _check_line(self, line: str, expected: bool) -> None:
        if not (expected and one_line(line)):
            self.findings.append(f"refused with {line!r}")

    def _check_printed(self, text: str, expected: bool) -> None:
        if not (expected and all(one_line(line) for line in text.split("\n"))):
            self.findings.append(f"the tool printed {text!r}")


@pytest.mark.slow
def test_payload_names_of_random_bytes(payloads, request, caplog):
    """Names of 0..300 random bytes through the library, argv and the socket: Xen's verdict (1..127 bytes, no
    NUL); refused ones change nothing; accepted ones come back byte for byte and unload to where they began;
    every message, log line and list row is one printable line; hello_world applies after every case."""
    caplog.set_level(logging.INFO)
    served = Served(Session(vcpus=2, seed=1, boot_ms=1, base=payloads))
    try:
        fuzzer = NameFuzzer(served, seed=request.config.getoption("fuzz_seed"))
        fuzzer.run(request.config.getoption("fuzz_axis_cases"))
        print(f"\nnames: {fuzzer.counts}")
        assert fuzzer.findings == []
        assert served.failure is None and served.thread.is_alive()
        assert all(one_line(line) for line in fuzzer.livepatch.rendezvous.log)
        assert all(one_line(record.getMessage()) for record in caplog.records)
        assert all(fuzzer.counts[f"{door} {verdict}"] for door in DOORS for verdict in ("accepted", "refused"))
    finally:
        served.stop()
