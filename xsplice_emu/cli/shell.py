"""`xsplice-emu shell`: a prompt on one live machine.

It takes every scenario step kind (the xen-livepatch verbs, `run 5ms`,
`stall 2 50ms`, `nmi 1`, `expect extra_version="Hello World"`) and its own
commands (`info`, `console`, `trace save FILE`, `help`, `quit`). At a
terminal it has history and completion of commands, payload names, vCPUs,
keyword words (`expect=`) and files; with piped input it reads one command a
line.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from ..control.session import Session
from ..control.verbs import VERBS
from ..engines import ENGINES
from ..errors import ConfigError, XspliceEmuError
from ..files import check_destination, write_file
from ..scenario import STEP_KINDS, Step
from ..scenario.faults import step_kinds
from ..scenario.spec import MachineSpec
from ..scenario.steps import ExpectStep
from ..scenario.writer import scenario_toml
from ..suggest import did_you_mean
from ..text import printable
from .common import machine_options, out, print_console_line, print_outcome, reports_errors


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
        return [word for word in self._words if "=" not in word]

    @property
    def keywords(self) -> list[str]:
        """The syntax's keyword words, as typed before their value: `expect=` for `[expect=N]`."""
        return [word.partition("=")[0] + "=" for word in self._words if "=" in word and word[:1].islower()]

    @property
    def _words(self) -> list[str]:
        return [word.strip("[]") for word in re.sub(r"\[-[^]]*\]", "", self.syntax).split()[1:]]


SHELL_COMMANDS = (
    Command("info", "Each vCPU's version values, the payloads and the applied stack."),
    Command("console [N]", "The console lines printed since the last `console` (or the last N)."),
    Command("trace save FILE", "Write the JSON Lines trace so far."),
    Command("save FILE", "Write the session so far as a scenario (TOML): `xsplice-emu run FILE` does it again, "
                         "to the same trace digest."),
    Command("help [COMMAND]", "The commands, or one command's syntax and options."),
    Command("quit", "Leave the shell (also exit, or Ctrl-D)."),
)


def step_command(kind: type[Step]) -> Command:
    """A step kind's command as `help` shows it: each parameter's word, help and TOML key, then its example."""
    params = tuple(f"{param.word:<16} {param.help}; in a scenario: {param.name}" for param in kind.params)
    return Command(kind.syntax, kind.summary,
                   (*params, f"e.g. {kind.example[1]}", f"in a scenario: {kind.example[0]}"))


STEP_COMMANDS = {command: kind for kind in STEP_KINDS for command in kind.commands()}
COMMANDS = {command.name: command for command in (
    *(Command(verb.usage, verb.help, (*(f"{option.form:<16} {option.described}" for option in verb.options),
                                      f"e.g. {verb.example}", f'in a scenario: livepatch = "{verb.example}"'))
      for verb in VERBS.values()),
    *(step_command(kind) for kind in STEP_KINDS if kind.kind in STEP_COMMANDS),  # the livepatch kind's are the verbs
    *SHELL_COMMANDS,
)}
"""The built-in commands; `commands()` adds those of fault kinds registered beside them."""


def commands() -> dict[str, Command]:
    """`COMMANDS`, then the command of each fault kind's step registered beside the built-in steps (`FAULTS`)."""
    added = [step_command(kind) for kind in step_kinds() if kind not in STEP_KINDS]
    return {**COMMANDS, **{command.name: command for command in added}}


@click.command()
@machine_options
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False),
              help="Write the JSON Lines trace here when the shell ends.")
@click.option("-q", "--quiet", is_flag=True, help="No banner, no echo of piped commands, no Xen log lines.")
@reports_errors
def shell(vcpus, seed, firmware, xen_syms, engine, boot_ms, clock_mhz, timer_hz, no_oracle, trace_path, quiet):
    """A prompt for livepatch and scenario verbs on one live machine."""
    if trace_path:
        check_destination(trace_path)
    session = Session(vcpus=vcpus, seed=seed, firmware=firmware, xen_syms=xen_syms, boot_ms=boot_ms,
                      oracle=not no_oracle, clock_mhz=clock_mhz, timer_hz=timer_hz, engine=engine or ENGINES[0])
    machine_spec = MachineSpec(vcpus=vcpus, seed=seed, firmware=firmware, boot_ms=boot_ms, xen_syms=xen_syms,
                               oracle=not no_oracle, clock_mhz=clock_mhz, timer_hz=timer_hz,
                               engine=engine or ENGINES[0])
    commands = Shell(session, machine=machine_spec, quiet=quiet)
    machine = session.machine
    patched = "" if machine.hypervisor is machine.image else f", patching {machine.hypervisor.path.name}"
    if not quiet:
        out.print(f"xsplice-emu shell: {vcpus} vCPUs, seed {seed}, {machine.now_ns / 1e6:g} ms booted{patched}. "
                  "`help` lists the commands.")
    if sys.stdin.isatty():
        from .shell_prompt import prompt_session, prompted  # prompt_toolkit: ~0.15 s to import, only at a terminal
        lines = prompted(prompt_session(session))
    else:
        lines = iter(sys.stdin.readline, "")
        lines = lines if quiet else _echoed(lines)
    try:
        for line in lines:
            if not commands.execute(line):
                break
    finally:
        if trace_path:
            machine.trace.write(trace_path)
    sys.exit(commands.status)


def _echoed(lines):
    """Piped input: each command shown after the prompt, as a terminal would show it."""
    for line in lines:
        out.print(f"xsplice> {escape(line.rstrip())}")
        yield line


class Shell:
    """The shell's commands on one session; `execute` takes one line.

    `status` is the exit status of the first command that failed (2 for bad
    input, 1 for a failed operation or expectation, the operator's own), else 0.
    """

    def __init__(self, session: Session, *, machine: MachineSpec | None = None, quiet: bool = False):
        self.session = session
        self.machine = machine or MachineSpec(vcpus=len(session.machine.vcpus))
        self.quiet = quiet
        self.status = 0
        self.ran: list[tuple[Step, str | None]] = []  # what `save` writes: each step run, with its rc
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
        steps = {command: kind for kind in step_kinds() for command in kind.commands()}
        if name in steps:
            self._step(steps[name].from_words(words, vcpus=len(session.machine.vcpus)))
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
        elif name == "save":
            if len(args) != 1:
                raise self._usage(name)
            write_file(check_destination(args[0]), scenario_toml(Path(args[0]).stem, self.machine, self.ran).encode())
            out.print(f"wrote {escape(args[0])} ({len(self.ran)} steps; `xsplice-emu run {escape(args[0])}` runs "
                      "them again)")
        elif name == "help":
            self._help(args)
        else:
            raise ConfigError(f"unknown command {name!r}{did_you_mean(name, commands())}; `help` lists the commands")

    def _step(self, step: Step) -> None:
        """Run one step; an operator command prints what Xen's tool prints, an expectation each check."""
        clock = self.session.machine
        before = clock.now_ns
        self.ran.append((step, None))
        done = step.run(self.session)
        self.ran[-1] = (step, done.rc)
        if done.value is not None and not done.checks:
            out.print(f"{escape(step.describe())} = {done.value} ({done.value:#x})")
        if done.outcome is not None:
            print_outcome(done.outcome, quiet=self.quiet)
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
        command = commands()[name]
        return ConfigError(f"usage: {command.syntax}: {command.summary}")

    def _info(self) -> None:
        session = self.session
        table = Table(title=f"virtual time {session.machine.now_ns / 1e6:.3f} ms", title_justify="left")
        for column in ("vCPU", "major", "minor", "extra"):
            table.add_column(column)
        found = session.versions()  # the calls an expect of the three versions makes: `save` writes it so
        self.ran.append((ExpectStep({"major_version": found[0].major, "minor_version": found[0].minor,
                                     "extra_version": found[0].extra}), None))
        for index, versions in enumerate(found):
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
        known = commands()
        if not args:
            for command in known.values():
                out.print(f"  {escape(command.name):<8} {escape(command.summary)}")
            return
        if args[0] not in known:
            raise ConfigError(f"unknown command {args[0]!r}{did_you_mean(args[0], known)}; `help` lists the "
                              "commands")
        command = known[args[0]]
        out.print(escape(command.syntax))
        for line in (command.summary, *command.details):
            out.print(f"  {escape(line)}")
