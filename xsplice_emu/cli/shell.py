"""`xsplice-emu shell`: a prompt on one live machine.

It takes the xen-livepatch verbs and the scenario verbs (`run 5ms`,
`stall 2 50ms`, `nmi 1`, `info`, `console`, `trace save FILE`). At a
terminal it has history and completion of commands, payload names and
files; with piped input it reads one command a line.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import click
from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError, XspliceEmuError
from ..session import Session
from ..verbs import VERBS, parse
from .common import machine_options, out, print_console_line, print_outcome, reports_errors

HISTORY = Path.home() / ".cache" / "xsplice-emu" / "shell_history"
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|ms|s)?$")
UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

# What each argument of a command is, for completion: a payload name, a file, or a fixed word.
ARGUMENTS = {"upload": ("new name", "file"), "load": ("file",), "apply": ("payload",), "revert": ("payload",),
             "replace": ("payload",), "unload": ("payload",), "trace": (("save",), "file"),
             "run": ("duration",), "stall": ("vcpu", "duration"), "nmi": ("vcpu",), "console": ("count",),
             "help": ("command",)}
SCENARIO_VERBS = {
    "run": "run DURATION: advance virtual time (5ms, 20us, 1s; a bare number is ms).",
    "stall": "stall VCPU DURATION: that vCPU spins with IRQs off from now on.",
    "nmi": "nmi VCPU: an NMI to that vCPU now.",
    "info": "info: each vCPU's version values, the payloads and the applied stack.",
    "console": "console [N]: the console lines printed since the last `console` (or the last N).",
    "trace": "trace save FILE: write the JSON Lines trace so far.",
    "help": "help [COMMAND]: the commands, or one command's options.",
    "quit": "quit: leave the shell (also exit, or Ctrl-D).",
}


@click.command()
@machine_options
@reports_errors
def shell(vcpus, seed, firmware, boot_ms):
    """A prompt for livepatch and scenario verbs on one live machine."""
    session = Session(vcpus=vcpus, seed=seed, firmware=firmware, boot_ms=boot_ms)
    commands = Shell(session)
    out.print(f"xsplice-emu shell: {vcpus} vCPUs, seed {seed}, {session.machine.now_ns / 1e6:g} ms booted. "
              "`help` lists the commands.")
    if sys.stdin.isatty():
        HISTORY.parent.mkdir(parents=True, exist_ok=True)
        prompt = PromptSession(history=FileHistory(str(HISTORY)), completer=ShellCompleter(session))
        lines = _prompted(prompt)
    else:
        lines = iter(sys.stdin.readline, "")
    for line in lines:
        if not commands.execute(line):
            break


def _prompted(prompt: PromptSession):
    while True:
        try:
            yield prompt.prompt("xsplice> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return


class Shell:
    """The shell's commands on one session; `execute` takes one line."""

    def __init__(self, session: Session):
        self.session = session
        self._console_seen = len(session.machine.console.lines)

    def execute(self, line: str) -> bool:
        """Run one command line; False when the shell should end."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            out.print(f"[red]error:[/red] {escape(str(exc))}")
            return True
        if not words:
            return True
        if words[0] in ("quit", "exit"):
            return False
        try:
            self._dispatch(words)
        except XspliceEmuError as exc:
            out.print(f"[red]error:[/red] {escape(str(exc))}")
        return True

    def _dispatch(self, words: list[str]) -> None:
        verb, args = words[0], words[1:]
        session = self.session
        if verb in VERBS:
            print_outcome(session.command(parse(words)))
        elif verb == "run":
            (duration,) = _arity(verb, args, 1)
            session.advance(_duration(duration))
            out.print(f"virtual time {session.machine.now_ns / 1e6:.3f} ms")
        elif verb == "stall":
            vcpu, duration = _arity(verb, args, 2)
            session.stall(self._vcpu(vcpu), _duration(duration))
        elif verb == "nmi":
            (vcpu,) = _arity(verb, args, 1)
            session.nmi(self._vcpu(vcpu))
        elif verb == "info":
            _arity(verb, args, 0)
            self._info()
        elif verb == "console":
            if args and not (len(args) == 1 and args[0].isdigit()):
                raise ConfigError(f"console takes at most one count: {SCENARIO_VERBS[verb]}")
            self._console(int(args[0]) if args else None)
        elif verb == "trace":
            if len(args) != 2 or args[0] != "save":
                raise ConfigError("usage: trace save FILE")
            session.machine.trace.write(args[1])
            out.print(f"wrote {escape(args[1])} ({len(session.machine.trace.events)} events, "
                      f"digest {session.machine.trace.digest[:16]})")
        elif verb == "help":
            self._help(args)
        else:
            raise ConfigError(f"unknown command {verb!r}; `help` lists the commands")

    def _vcpu(self, text: str) -> int:
        vcpus = len(self.session.machine.vcpus)
        if not text.isdigit() or int(text) >= vcpus:
            raise ConfigError(f"vCPU {text!r} is out of range: the machine has {vcpus} (0..{vcpus - 1})")
        return int(text)

    def _info(self) -> None:
        session = self.session
        table = Table(title=f"virtual time {session.machine.now_ns / 1e6:.3f} ms", title_justify="left")
        for column in ("vCPU", "major", "minor", "extra"):
            table.add_column(column)
        for index, versions in enumerate(session.versions()):
            table.add_row(str(index), str(versions.major), str(versions.minor), escape(versions.extra))
        out.print(table)
        payloads = ", ".join(f"{p.name} {p.state.name}" for p in session.livepatch.list()) or "none"
        out.print(f"payloads: {escape(payloads)}")
        out.print(f"applied: {escape(' <- '.join(session.livepatch.applied) or 'nothing')}")

    def _console(self, count: int | None) -> None:
        lines = self.session.machine.console.lines
        shown = lines[-count:] if count is not None else lines[self._console_seen:]
        self._console_seen = len(lines)
        for line in shown:
            print_console_line(line)

    def _help(self, args: list[str]) -> None:
        if args and args[0] in VERBS:
            command = VERBS[args[0]]
            with click.Context(command, info_name=args[0]) as context:
                click.echo(command.get_help(context))
            return
        for name, command in VERBS.items():
            out.print(f"  {escape(name):<8} {escape(command.get_short_help_str(70))}")
        for name, text in SCENARIO_VERBS.items():
            out.print(f"  {name:<8} {escape(text.split(': ', 1)[1])}")


def _arity(verb: str, args: list[str], count: int) -> list[str]:
    if len(args) != count:
        raise ConfigError(f"{verb} takes {count} argument{'s' if count != 1 else ''}: {SCENARIO_VERBS[verb]}")
    return args


def _duration(text: str) -> int:
    match = DURATION.match(text)
    if not match:
        raise ConfigError(f"{text!r} is not a duration (5ms, 20us, 1s; a bare number is ms)")
    return int(float(match.group(1)) * UNIT_NS[match.group(2) or "ms"])


class ShellCompleter(Completer):
    """Completes command names, then payload names or files by the command's arguments."""

    def __init__(self, session: Session):
        self.session = session
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event):
        text = document.text_before_cursor
        words = text.split()
        if not words or (len(words) == 1 and not text.endswith(" ")):
            yield from self._words(words[0] if words else "", [*VERBS, *SCENARIO_VERBS])
            return
        position = len(words) - 1 if not text.endswith(" ") else len(words)
        kinds = ARGUMENTS.get(words[0], ())
        if position - 1 >= len(kinds):
            return
        kind = kinds[position - 1]
        current = "" if text.endswith(" ") else words[-1]
        if kind == "payload":
            yield from self._words(current, [p.name for p in self.session.livepatch.list()])
        elif kind == "command":
            yield from self._words(current, [*VERBS, *SCENARIO_VERBS])
        elif isinstance(kind, tuple):
            yield from self._words(current, kind)
        elif kind == "file":
            yield from self.paths.get_completions(Document(current, len(current)), complete_event)

    @staticmethod
    def _words(prefix: str, candidates):
        for word in candidates:
            if word.startswith(prefix):
                yield Completion(word, start_position=-len(prefix))
