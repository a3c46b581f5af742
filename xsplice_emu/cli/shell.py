"""`xsplice-emu shell`: a prompt on one live machine.

It takes every scenario step kind (the xen-livepatch verbs, `run 5ms`,
`stall 2 50ms`, `nmi 1`, `expect extra_version="Hello World"`) and its own
commands (`info`, `console`, `trace save FILE`, `help`, `quit`). At a
terminal it has history and completion of commands, payload names and
files; with piped input it reads one command a line.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from rich.markup import escape
from rich.table import Table

from ..engines import ENGINES
from ..errors import ConfigError, XspliceEmuError
from ..files import check_destination
from ..scenario import STEP_KINDS, Step
from ..session import Session
from ..text import printable
from ..verbs import VERBS
from .common import machine_options, out, print_console_line, print_outcome, reports_errors

HISTORY = Path.home() / ".cache" / "xsplice-emu" / "shell_history"


@dataclass(frozen=True)
class Command:
    """A command as `help` shows it and completion reads it: `syntax` (NAME, FILE, COMMAND are completed)."""

    syntax: str
    summary: str
    details: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.syntax.split()[0]

    @property
    def arguments(self) -> list[str]:
        """The syntax's positional words after the name, brackets off."""
        return [word.strip("[]") for word in re.sub(r"\[-[^]]*\]", "", self.syntax).split()[1:]]


SHELL_COMMANDS = (
    Command("info", "Each vCPU's version values, the payloads and the applied stack."),
    Command("console [N]", "The console lines printed since the last `console` (or the last N)."),
    Command("trace save FILE", "Write the JSON Lines trace so far."),
    Command("help [COMMAND]", "The commands, or one command's syntax and options."),
    Command("quit", "Leave the shell (also exit, or Ctrl-D)."),
)
STEP_COMMANDS = {command: kind for kind in STEP_KINDS for command in kind.commands()}
COMMANDS = {command.name: command for command in (
    *(Command(verb.usage, verb.help, tuple(f"{option.form:<16} {option.described}" for option in verb.options))
      for verb in VERBS.values()),
    *(Command(kind.syntax, kind.summary, (f"e.g. {kind.example[1]}", f"in a scenario: {kind.example[0]}"))
      for kind in STEP_KINDS if kind.kind in STEP_COMMANDS),  # the livepatch kind's commands are the verbs
    *SHELL_COMMANDS,
)}


@click.command()
@machine_options
@reports_errors
def shell(vcpus, seed, firmware, xen_syms, engine, boot_ms, no_oracle):
    """A prompt for livepatch and scenario verbs on one live machine."""
    session = Session(vcpus=vcpus, seed=seed, firmware=firmware, xen_syms=xen_syms, boot_ms=boot_ms,
                      oracle=not no_oracle, engine=engine or ENGINES[0])
    commands = Shell(session)
    machine = session.machine
    patched = "" if machine.hypervisor is machine.image else f", patching {machine.hypervisor.path.name}"
    out.print(f"xsplice-emu shell: {vcpus} vCPUs, seed {seed}, {machine.now_ns / 1e6:g} ms booted{patched}. "
              "`help` lists the commands.")
    if sys.stdin.isatty():
        HISTORY.parent.mkdir(parents=True, exist_ok=True)
        prompt: PromptSession[str] = PromptSession(history=FileHistory(str(HISTORY)),
                                                   completer=ShellCompleter(session))
        lines = _prompted(prompt)
    else:
        lines = _echoed(iter(sys.stdin.readline, ""))
    for line in lines:
        if not commands.execute(line):
            break
    sys.exit(commands.status)


def _echoed(lines):
    """Piped input: each command shown after the prompt, as a terminal would show it."""
    for line in lines:
        out.print(f"xsplice> {escape(line.rstrip())}")
        yield line


def _prompted(prompt: PromptSession):
    while True:
        try:
            yield prompt.prompt("xsplice> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return


class Shell:
    """The shell's commands on one session; `execute` takes one line.

    `status` is the exit status of the first command that failed (2 for bad
    input, 1 for a failed operation or expectation, the operator's own), else 0.
    """

    def __init__(self, session: Session):
        self.session = session
        self.status = 0
        self._console_seen = len(session.machine.console.lines)

    def execute(self, line: str) -> bool:
        """Run one command line; False when the shell should end."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            out.print(f"[red]error:[/red] {escape(str(exc))}")
            self._failed(2)
            return True
        if not words:
            return True
        if words[0] in ("quit", "exit"):
            return False
        try:
            self._dispatch(words)
        except XspliceEmuError as exc:
            out.print(f"[red]error:[/red] {escape(str(exc))}")
            self._failed(2 if isinstance(exc, ConfigError) else 1)
        return True

    def _failed(self, status: int) -> None:
        self.status = self.status or status

    def _dispatch(self, words: list[str]) -> None:
        name, args = words[0], words[1:]
        session = self.session
        if name in STEP_COMMANDS:
            self._step(STEP_COMMANDS[name].from_words(words, vcpus=len(session.machine.vcpus)))
        elif name == "info":
            if args:
                raise self._usage(name)
            self._info()
        elif name == "console":
            if args and not (len(args) == 1 and args[0].isdigit()):
                raise self._usage(name)
            self._console(int(args[0]) if args else None)
        elif name == "trace":
            if len(args) != 2 or args[0] != "save":
                raise self._usage(name)
            session.machine.trace.write(check_destination(args[1]))
            out.print(f"wrote {escape(args[1])} ({len(session.machine.trace.events)} events, "
                      f"digest {session.machine.trace.digest[:16]})")
        elif name == "help":
            self._help(args)
        else:
            raise ConfigError(f"unknown command {name!r}; `help` lists the commands")

    def _step(self, step: Step) -> None:
        """Run one step; an operator command prints what Xen's tool prints, an expectation each check."""
        clock = self.session.machine
        before = clock.now_ns
        done = step.run(self.session)
        if done.outcome is not None:
            print_outcome(done.outcome)
            self._failed(done.outcome.exit_code)
            return
        for check in done.checks:
            if check.ok:
                out.print(f"[green]pass[/green] {escape(check.what)}: {escape(repr(check.got))}")
            else:
                self._failed(1)
                out.print(f"[red]FAIL[/red] {escape(check.what)}: expected {escape(repr(check.expected))}, "
                          f"got {escape(repr(check.got))}")
        if not done.checks and clock.now_ns != before:
            out.print(f"virtual time {clock.now_ns / 1e6:.3f} ms")

    @staticmethod
    def _usage(name: str) -> ConfigError:
        command = COMMANDS[name]
        return ConfigError(f"usage: {command.syntax}: {command.summary}")

    def _info(self) -> None:
        session = self.session
        table = Table(title=f"virtual time {session.machine.now_ns / 1e6:.3f} ms", title_justify="left")
        for column in ("vCPU", "major", "minor", "extra"):
            table.add_column(column)
        for index, versions in enumerate(session.versions()):
            table.add_row(str(index), str(versions.major), str(versions.minor), escape(versions.extra))
        out.print(table)
        payloads = ", ".join(f"{printable(p.name)} {p.state.name}" for p in session.livepatch.list()) or "none"
        out.print(f"payloads: {escape(payloads)}")
        out.print(f"applied: {escape(' <- '.join(map(printable, session.livepatch.applied)) or 'nothing')}")

    def _console(self, count: int | None) -> None:
        lines = self.session.machine.console.lines
        shown = lines[-count:] if count is not None else lines[self._console_seen:]
        self._console_seen = len(lines)
        for line in shown:
            print_console_line(line)

    def _help(self, args: list[str]) -> None:
        if not args:
            for command in COMMANDS.values():
                out.print(f"  {escape(command.name):<8} {escape(command.summary)}")
            return
        if args[0] not in COMMANDS:
            raise ConfigError(f"unknown command {args[0]!r}; `help` lists the commands")
        command = COMMANDS[args[0]]
        out.print(escape(command.syntax))
        for line in (command.summary, *command.details):
            out.print(f"  {escape(line)}")


class ShellCompleter(Completer):
    """Completes command names, then payload names or files by the command's arguments."""

    def __init__(self, session: Session):
        self.session = session
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event):
        text = document.text_before_cursor
        words = text.split()
        if not words or (len(words) == 1 and not text.endswith(" ")):
            yield from self._words(words[0] if words else "", COMMANDS)
            return
        position = len(words) - 1 if not text.endswith(" ") else len(words)
        command = COMMANDS.get(words[0])
        arguments = command.arguments if command else []
        if position - 1 >= len(arguments):
            return
        argument = arguments[position - 1]
        current = "" if text.endswith(" ") else words[-1]
        if argument == "NAME":
            yield from self._words(current, [p.name for p in self.session.livepatch.list()])
        elif argument == "COMMAND":
            yield from self._words(current, COMMANDS)
        elif argument == "FILE":
            yield from self.paths.get_completions(Document(current, len(current)), complete_event)
        elif argument.islower():
            yield from self._words(current, [argument])

    @staticmethod
    def _words(prefix: str, candidates):
        for word in candidates:
            if word.startswith(prefix):
                yield Completion(word, start_position=-len(prefix))
