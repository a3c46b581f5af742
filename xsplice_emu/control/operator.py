"""Xen's operator tool, `xen-livepatch`, over one machine's `Livepatch`.

Each verb returns an `Outcome`: the lines the real tool prints (stdout and
stderr, with its wording), the lines Xen logged meanwhile (shown `(XEN) `,
exactly as Xen prints them), the testbed's own remarks (shown `(testbed) `,
never as Xen's), the exit status (0 success, 2 for EAGAIN/EBUSY, else 1) and
the errno that decided it. Like the real tool, an action is requested and
then waited for (the machine runs in virtual time until the action completes
or twice its timeout has passed), and its end is read from the payload's
status: its rc, else its state.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..duration import NS_PER_MS
from ..engines import LivepatchEngine
from ..errors import FileError, LivepatchError, errno_name
from ..files import read_file
from ..livepatch import Action, PayloadState
from ..livepatch.abi import DEFAULT_TIMEOUT_NS, NAME_MAX, PAYLOAD_MAX_SIZE
from ..livepatch.names import name_bytes
from ..livepatch.payload import metadata_strings
from ..livepatch.states import TARGET_STATE, ActionResult
from ..text import printable

OUT, ERR, XEN, NOTE = "out", "err", "xen", "note"
PREFIXES = {XEN: "(XEN) ", NOTE: "(testbed) "}
"""How each stream's lines are marked when shown (the tool's own output is not)."""
RETRY_ERRNOS = (errno.EAGAIN, errno.EBUSY)


@dataclass(frozen=True)
class ActionVerb:
    """One of the tool's action verbs: the state it needs and the one it aims at."""

    name: str
    gerund: str
    action: Action
    allowed: PayloadState

    @property
    def expected(self) -> PayloadState | None:
        """The state the action leaves the payload in (None: unloaded, gone)."""
        return TARGET_STATE.get(self.action)


ACTION_VERBS = {
    "apply": ActionVerb("apply", "Applying", Action.APPLY, PayloadState.CHECKED),
    "revert": ActionVerb("revert", "Reverting", Action.REVERT, PayloadState.APPLIED),
    "unload": ActionVerb("unload", "Unloading", Action.UNLOAD, PayloadState.CHECKED),
    "replace": ActionVerb("replace", "Replacing all live patches with", Action.REPLACE, PayloadState.CHECKED),
}


@dataclass(frozen=True)
class Outcome:
    """What one operator command printed, and how it ended."""

    exit_code: int
    errno: int
    chunks: tuple[tuple[str, str], ...]
    results: tuple[ActionResult, ...] = ()

    @property
    def text(self) -> str:
        """Everything printed, Xen's lines prefixed `(XEN) ` and the testbed's `(testbed) `, as one string."""
        return "".join(PREFIXES.get(stream, "") + text for stream, text in self.chunks)

    @property
    def errno_name(self) -> str:
        return errno_name(self.errno)


@dataclass
class _Printer:
    """Collects an outcome's chunks as the verb runs."""

    chunks: list[tuple[str, str]] = field(default_factory=list)
    hypervisor: list[tuple[str, str]] = field(default_factory=list)
    results: list[ActionResult] = field(default_factory=list)

    def out(self, text: str) -> None:
        self.chunks.append((OUT, text))

    def err(self, text: str) -> None:
        self.chunks.append((ERR, text))

    def logged(self, livepatch: LivepatchEngine, since: tuple[int, int]) -> None:
        """The hypervisor's log lines and the testbed's notes from `since` (see `_seen`); they follow the tool's
        own output."""
        rendezvous = livepatch.rendezvous
        self.hypervisor += [(XEN, line + "\n") for line in rendezvous.log[since[0]:]]
        self.hypervisor += [(NOTE, line + "\n") for line in rendezvous.notes[since[1]:]]

    def note(self, text: str) -> None:
        """A remark of the testbed's own."""
        self.hypervisor.append((NOTE, text + "\n"))

    def error(self, code: int) -> None:
        self.err(f"Error {code}: {os.strerror(code)}\n")

    def outcome(self, code: int) -> Outcome:
        exit_code = 0 if code == 0 else 2 if code in RETRY_ERRNOS else 1
        return Outcome(exit_code, code, tuple(self.chunks + self.hypervisor), tuple(self.results))


def _load_name(file: str) -> str:
    """The name `load` uploads `file` under: its base name up to the last dot."""
    return Path(file).name.rsplit(".", 1)[0]


class OperatorTool:
    """`xen-livepatch` against one machine's livepatch controller."""

    def __init__(self, livepatch: LivepatchEngine, *, base: Path = Path(".")):
        self.livepatch = livepatch
        self.base = base
        self._uploaded_ahead: tuple[str, bool, _Printer, int] | None = None

    def path(self, file: str) -> Path:
        """`file` as the tool sees it: relative paths start at `base`."""
        return self.base / file

    # -- verbs -------------------------------------------------------------
    def upload(self, name: str, file: str, *, allow_unsafe: bool = False) -> Outcome:
        self._uploaded_ahead = None
        printer = _Printer()
        return printer.outcome(self._upload(printer, name, file, allow_unsafe=allow_unsafe))

    def list(self) -> Outcome:
        """As xen-livepatch 4.17: "Nothing to list", or a header and a row per payload, its metadata column the
        payload's .modinfo strings joined by ';'."""
        self._uploaded_ahead = None
        printer = _Printer()
        payloads = self.livepatch.list()
        if not payloads:
            printer.out("Nothing to list\n")
            return printer.outcome(0)
        printer.out(" ID                                     | status     | metadata\n"
                    "----------------------------------------+------------+---------------\n")
        for payload in payloads:
            row = f"{printable(payload.name):<40}| {payload.state.name}"
            row += f" ({-payload.rc}, {os.strerror(-payload.rc)})    | " if payload.rc else "    | "
            printer.out(row + printable(";".join(metadata_strings(payload.metadata))) + "\n")
        return printer.outcome(0)

    def action(self, verb: str, name: str, **options) -> Outcome:
        """apply, revert, replace or unload `name` (options: `_action`'s), waiting for the result."""
        self._uploaded_ahead = None
        printer = _Printer()
        code = self._action(printer, ACTION_VERBS[verb], name, **options)
        return printer.outcome(code)

    def load(self, file: str, *, allow_unsafe: bool = False, **options) -> Outcome:
        """Upload `file` under its base name (up to the last dot) and apply it; unload it again if that fails.
        The upload is the one `upload_ahead` ran if this is the command it was run for."""
        ahead, self._uploaded_ahead = self._uploaded_ahead, None
        name = _load_name(file)
        if ahead is not None and ahead[:2] == (file, allow_unsafe):
            _, _, printer, code = ahead
        else:
            printer = _Printer()
            code = self._upload(printer, name, file, allow_unsafe=allow_unsafe)
        if code == 0:
            code = self._action(printer, ACTION_VERBS["apply"], name, **options)
            if code:
                self._action(printer, ACTION_VERBS["unload"], name)
        return printer.outcome(code)

    def upload_ahead(self, file: str, *, allow_unsafe: bool = False) -> None:
        """Run the upload that the next command, `load file`, starts with, now: an upload neither runs the machine
        nor draws from its scheduler, so an exploration does it once in the machine every run forks from. The
        load then prints what it would have; any other command next forgets it (the payload stays uploaded)."""
        printer = _Printer()
        code = self._upload(printer, _load_name(file), file, allow_unsafe=allow_unsafe)
        self._uploaded_ahead = (file, allow_unsafe, printer, code)

    # -- the tool's logic ----------------------------------------------------
    def _upload(self, printer: _Printer, name: str, file: str, *, allow_unsafe: bool) -> int:
        try:
            size = len(name_bytes(name))
        except LivepatchError as exc:
            printer.err(f"{exc.reason}\n")
            return exc.errno
        if size > NAME_MAX:  # the tool counts the bytes of argv, as strlen does
            printer.err(f"ID must be no more than {NAME_MAX} characters.\n")
            return errno.EINVAL
        path = self.path(file)
        try:
            data = read_file(path, limit=PAYLOAD_MAX_SIZE, what="payload")
        except FileError as exc:
            printer.err(f"Could not open {file}.\n")
            printer.error(exc.errno)
            return exc.errno
        printer.out(f"Uploading {file}... ")
        seen = self._seen()
        try:
            self.livepatch.upload(name, data, allow_unsafe=allow_unsafe)
        except LivepatchError as exc:
            return self._failed(printer, exc, seen)
        printer.out("completed\n")
        printer.logged(self.livepatch, seen)
        return 0

    def _action(self, printer: _Printer, verb: ActionVerb, name: str, *, timeout_ms: float | None = None,
                from_vcpu: int | None = None, nodeps: bool = False, unsafe: bool = False, from_irq: bool = False,
                preempt_requester_ms: float | None = None) -> int:
        try:
            payload = self.livepatch.get(name)
        except LivepatchError as exc:
            printer.err(f"Failed to get status of {printable(name)}.\n")
            printer.error(exc.errno)
            return exc.errno
        if payload.rc == -errno.EAGAIN:
            printer.err(f"Cannot execute {verb.name}.\nOperation already in progress.\n")
            return errno.EAGAIN
        if payload.state is verb.expected:
            printer.out("No action needed.\n")
            return 0
        if payload.state is not verb.allowed:
            self._wrong_state(printer, name, payload.state, verb.allowed)
            return errno.EINVAL
        printer.out(f"{verb.gerund} {printable(name)}... ")
        seen = self._seen()
        timeout_ns = DEFAULT_TIMEOUT_NS if timeout_ms is None else int(timeout_ms * NS_PER_MS)
        try:
            vetoed = self.livepatch.action(name, verb.action, timeout_ns=timeout_ns, from_vcpu=from_vcpu,
                                           nodeps=nodeps, unsafe=unsafe, from_irq=from_irq,
                                           preempt_requester_ns=int((preempt_requester_ms or 0) * NS_PER_MS))
        except LivepatchError as exc:
            return self._failed(printer, exc, seen)
        if vetoed:
            printer.out("failed\n")
            printer.logged(self.livepatch, seen)
            printer.note(f"the hypervisor returned {vetoed} (a pre-action hook's veto, as Xen returns it); the "
                         "real tool then prints the errno libxc left, whatever it is")
            return vetoed
        result = self.livepatch.results[-1] if unsafe else self.livepatch.poll()
        printer.logged(self.livepatch, seen)
        if result is not None:
            printer.results.append(result)
        return self._ended(printer, verb, name, timeout_ns)

    def _ended(self, printer: _Printer, verb: ActionVerb, name: str, timeout_ns: int) -> int:
        """As the tool, once it has waited: the payload's status says how the action ended (its rc, else its
        state; unloaded, it is gone)."""
        try:
            payload = self.livepatch.get(name)
        except LivepatchError as exc:
            rc, state = -exc.errno, None
        else:
            rc, state = payload.rc, payload.state
        if rc == -errno.EAGAIN:
            printer.out("failed\n")
            printer.err("Operation didn't complete.\n")
            printer.note(f"the tool stopped waiting after twice the timeout, {2 * timeout_ns / 1e6:g} ms of virtual "
                         "time; the action may still run")
            return errno.EAGAIN
        if rc == 0 and state is verb.expected or rc == -errno.ENOENT and verb.expected is None:
            printer.out("completed\n")
            return 0
        printer.out("failed\n")
        if rc < 0:
            printer.error(-rc)
            return -rc
        assert state is not None and verb.expected is not None
        self._wrong_state(printer, name, state, verb.expected)
        return errno.EINVAL

    def _seen(self) -> tuple[int, int]:
        """How many hypervisor log lines and testbed notes there are now."""
        rendezvous = self.livepatch.rendezvous
        return len(rendezvous.log), len(rendezvous.notes)

    def _failed(self, printer: _Printer, exc: LivepatchError, seen: tuple[int, int]) -> int:
        """A refused request, as the tool shows it: `failed`, its errno; Xen's lines, and the testbed's reason
        unless it is one of those lines (on the xen engine, Xen's own line is the reason)."""
        printer.out("failed\n")
        printer.error(exc.errno)
        printer.logged(self.livepatch, seen)
        if exc.reason not in (exc.xen_log or ()):
            printer.note(exc.reason)
        return exc.errno

    @staticmethod
    def _wrong_state(printer: _Printer, name: str, current: PayloadState, expected: PayloadState) -> None:
        printer.err(f"{printable(name)} is in the wrong state.\n"
                    f"Current state: {current.name}\nExpected state: {expected.name}\n")
