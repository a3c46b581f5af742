"""The operator's command lines: one `Verb` spec per `xen-livepatch` verb, and how each runs.

The same specs parse a verb in a scenario's `livepatch = "..."` step and at
the shell prompt, and the `xsplice-emu livepatch` command line is built from
them. Options go before or after the arguments. Parsing gives a `Request`;
running it on an `OperatorTool` gives an `Outcome`.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..duration import MAX_MS
from ..errors import ConfigError
from ..platform import NR_CPUS
from ..suggest import did_you_mean
from .operator import OperatorTool, Outcome


@dataclass(frozen=True)
class Request:
    """One parsed operator command line."""

    verb: str
    params: dict[str, Any]

    @property
    def files(self) -> list[str]:
        """The payload files it reads."""
        return [self.params["file"]] if "file" in self.params else []

    def run(self, tool: OperatorTool) -> Outcome:
        return VERBS[self.verb].runs(tool, dict(self.params))


@dataclass(frozen=True)
class Option:
    """`--NAME VALUE` (a number, at least or above `minimum`), or `--NAME` alone when `type` is bool.

    Its value is not yet a `scenario.keys.Value` (the one grammar of TOML values and step words): that layer sits
    above this one, so Value (without its payload states and oracle checks) would first move down here."""

    name: str
    help: str
    type: type = bool
    minimum: float | None = None
    above: bool = False
    maximum: float | None = None
    default: Any = None
    metavar: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def form(self) -> str:
        """`--timeout-ms MS`, or `--nodeps` for a flag."""
        return f"{self.flag} {self.metavar}" if self.type is not bool else self.flag

    @property
    def bound(self) -> str:
        """`> 0`, `>= 0 and <= 255`: what a value must be."""
        upper = f" and <= {self.maximum:g}" if self.maximum is not None else ""
        return f"{'>' if self.above else '>='} {self.minimum:g}{upper}"

    @property
    def described(self) -> str:
        """Its help, with its range and default."""
        limits = [self.bound] if self.minimum is not None else []
        limits += [f"default {self.default}"] if self.type is not bool and self.default is not None else []
        return self.help + (f" [{'; '.join(limits)}]" if limits else "")

    def convert(self, text: str) -> Any:
        """`text` as this option's value; ValueError saying what is wrong."""
        try:
            value = self.type(text)
        except ValueError:
            raise ValueError(f"{self.flag} takes {'a number' if self.type is float else 'an integer'}, "
                             f"got {text!r}") from None
        if self.minimum is not None and not (value > self.minimum if self.above else value >= self.minimum) \
                or self.maximum is not None and not value <= self.maximum:
            raise ValueError(f"{self.flag} must be {self.bound}, got {text}")
        return value


EXAMPLE_ARGUMENTS = {"name": "hello", "file": "payloads/build/xen_hello_world.livepatch"}


@dataclass(frozen=True)
class Verb:
    """One verb: its positional arguments (parameter names, in order), its options, its help, and how it runs on
    the operator's tool (`runs`: given the tool and the parsed parameters)."""

    name: str
    help: str
    runs: Callable[[OperatorTool, dict[str, Any]], Outcome]
    arguments: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()

    @property
    def usage(self) -> str:
        """`apply NAME [--timeout-ms MS] [--from-vcpu N] [--nodeps]`."""
        return " ".join([self.name, *(argument.upper() for argument in self.arguments),
                         *(f"[{option.form}]" for option in self.options)])

    @property
    def example(self) -> str:
        """The verb with example arguments: `apply hello`, `load payloads/build/xen_hello_world.livepatch`."""
        return " ".join([self.name, *(EXAMPLE_ARGUMENTS[argument] for argument in self.arguments)])

    @property
    def synopsis(self) -> str:
        """`apply NAME [OPTIONS]`."""
        return " ".join([self.name, *(argument.upper() for argument in self.arguments)]) + \
            (" [OPTIONS]" if self.options else "")

    def parse(self, words: list[str]) -> Request:
        """The request for the words after the verb; ConfigError naming the verb and what is wrong."""
        request, rest = self.take(words)
        if rest:
            raise self._error(f"Unexpected argument {rest[0]!r}")
        return request

    def take(self, words: list[str]) -> tuple[Request, list[str]]:
        """The request at the start of `words` (after the verb), and the words after it.

        Options may come anywhere; the request ends at the first word that is
        not an option once every argument is there.
        """
        by_flag = {option.flag: option for option in self.options}
        params = {option.name: option.default for option in self.options}
        positional: list[str] = []
        index = 0
        while index < len(words):
            word = words[index]
            index += 1
            if not word.startswith("-") or word == "-":
                if len(positional) == len(self.arguments):
                    index -= 1
                    break
                positional.append(word)
                continue
            flag, has_value, value = word.partition("=")
            option = by_flag.get(flag)
            if option is None:
                raise self._error(f"Unknown option {flag!r}")
            if option.type is bool:
                if has_value:
                    raise self._error(f"{flag} takes no value")
                params[option.name] = True
                continue
            if not has_value:
                if index == len(words):
                    raise self._error(f"{flag} needs a value")
                value, index = words[index], index + 1
            try:
                params[option.name] = option.convert(value)
            except ValueError as exc:
                raise self._error(str(exc)) from None
        if len(positional) < len(self.arguments):
            raise self._error(f"Missing argument {self.arguments[len(positional)].upper()!r}")
        return Request(self.name, dict(zip(self.arguments, positional, strict=True)) | params), words[index:]

    def _error(self, what: str) -> ConfigError:
        return ConfigError(f"{self.name}: {what} (usage: {self.usage})")


ACTION_OPTIONS = (  # what the testbed adds to Xen's actions
    Option("timeout_ms", "Rendezvous timeout in virtual ms (default: Xen's 30).", float, 0, above=True,
           maximum=MAX_MS, metavar="MS"),
    Option("from_vcpu", "vCPU dom0 makes the request on, where the work is queued: the first one in, master "
           "(default: the lowest-numbered one neither stalled nor preempted).", int, 0, maximum=NR_CPUS - 1,
           metavar="N"),
    Option("nodeps", "Skip the build-id dependency check.", default=False),
)
FAULT_OPTIONS = (  # faults for the safety oracle (docs/oracle.md)
    Option("unsafe", "Fault: no rendezvous; write the patch byte by byte while the vCPUs run (a naive "
           "text_poke; APPLY and REVERT only).", default=False),
    Option("from_irq", "Fault: run the rendezvous from interrupt handlers instead of reset_stack_and_jump "
           "(live frames on every stack).", default=False),
    Option("preempt_requester_ms", "Fault: once the work is scheduled, the host does not schedule the vCPU it was "
           "queued on for MS virtual ms (a nested Xen's CPU preempted by its host before it runs the work).",
           float, 0, above=True, maximum=MAX_MS, metavar="MS"),
)
ALLOW_UNSAFE = Option("allow_unsafe", "Accept a payload that patches an unsafe target (NMI path, patching code), "
                      "with a warning, to show the hazard.", default=False)


def _action(verb: str) -> Callable[[OperatorTool, dict[str, Any]], Outcome]:
    """How the action `verb` runs: `tool.action(verb, NAME, **options)`."""
    return lambda tool, params: tool.action(verb, params.pop("name"), **params)


VERBS = {verb.name: verb for verb in (
    Verb("upload", "Upload FILE as payload NAME.",
         lambda tool, params: tool.upload(params["name"], params["file"], allow_unsafe=params["allow_unsafe"]),
         ("name", "file"), (ALLOW_UNSAFE,)),
    Verb("list", "List the uploaded payloads and their states.", lambda tool, params: tool.list()),
    Verb("load", "Upload FILE (named after it) and apply it; unload it if that fails.",
         lambda tool, params: tool.load(params.pop("file"), **params), ("file",), (*ACTION_OPTIONS, ALLOW_UNSAFE)),
    Verb("apply", "Apply payload NAME (CHECKED -> APPLIED).", _action("apply"), ("name",),
         (*ACTION_OPTIONS, *FAULT_OPTIONS)),
    Verb("revert", "Revert payload NAME, the top of the applied stack (APPLIED -> CHECKED).", _action("revert"),
         ("name",), (*ACTION_OPTIONS, *FAULT_OPTIONS)),
    Verb("unload", "Unload payload NAME (CHECKED only).", _action("unload"), ("name",)),
    Verb("replace", "Revert every applied payload and apply NAME, in one quiesced window.", _action("replace"),
         ("name",), ACTION_OPTIONS),
)}


def parse(line: str | list[str]) -> Request:
    """Parse an operator command line (a string, or its words); ConfigError when it is not one."""
    words = _words(line)
    if not words:
        raise ConfigError("empty command line")
    return _verb(words[0]).parse(words[1:])


def parse_chain(line: str | list[str]) -> list[Request]:
    """Parse `VERB ARGS [VERB ARGS]...`: each verb's request, in order."""
    words = _words(line)
    requests = []
    while words:
        request, words = _verb(words[0]).take(words[1:])
        requests.append(request)
    return requests


def _words(line: str | list[str]) -> list[str]:
    try:
        return shlex.split(line) if isinstance(line, str) else list(line)
    except ValueError as exc:
        raise ConfigError(f"cannot split {line!r}: {exc}") from None


def _verb(word: str) -> Verb:
    if word not in VERBS:
        raise ConfigError(f"unknown command {word!r}{did_you_mean(word, VERBS)} (one of {', '.join(VERBS)})")
    return VERBS[word]
