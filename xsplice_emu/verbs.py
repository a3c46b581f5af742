"""The operator's command lines: one `Verb` spec per `xen-livepatch` verb.

The same specs parse a verb in a scenario's `livepatch = "..."` step and at
the shell prompt, and the `xsplice-emu livepatch` command line is built from
them. Options go before or after the arguments. Parsing gives a `Request`;
running it on an `OperatorTool` gives an `Outcome`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
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
        params = dict(self.params)
        if self.verb == "upload":
            return tool.upload(params["name"], params["file"])
        if self.verb == "list":
            return tool.list()
        if self.verb == "load":
            return tool.load(params.pop("file"), **params)
        return tool.action(self.verb, params.pop("name"), **params)


@dataclass(frozen=True)
class Option:
    """`--NAME VALUE` (a number, at least or above `minimum`), or `--NAME` alone when `type` is bool."""

    name: str
    help: str
    type: type = bool
    minimum: float | None = None
    above: bool = False
    default: Any = None
    metavar: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def usage(self) -> str:
        return f"[{self.flag}{' ' + self.metavar if self.type is not bool else ''}]"

    def convert(self, text: str) -> Any:
        """`text` as this option's value; ValueError saying what is wrong."""
        try:
            value = self.type(text)
        except ValueError:
            raise ValueError(f"{self.flag} takes {'a number' if self.type is float else 'an integer'}, "
                             f"got {text!r}") from None
        if self.minimum is not None and not (value > self.minimum if self.above else value >= self.minimum):
            raise ValueError(f"{self.flag} must be {'>' if self.above else '>='} {self.minimum:g}, got {text}")
        return value


@dataclass(frozen=True)
class Verb:
    """One verb: its positional arguments (parameter names, in order), its options and its help."""

    name: str
    help: str
    arguments: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()

    @property
    def usage(self) -> str:
        """`apply NAME [--timeout-ms MS] [--from-vcpu N] [--nodeps]`."""
        return " ".join([self.name, *(argument.upper() for argument in self.arguments),
                         *(option.usage for option in self.options)])

    def parse(self, words: list[str]) -> Request:
        """The request for the words after the verb; ConfigError naming the verb and what is wrong."""
        by_flag = {option.flag: option for option in self.options}
        params = {option.name: option.default for option in self.options}
        positional = []
        rest = iter(words)
        for word in rest:
            if word == "--":
                positional += rest
            elif word.startswith("-") and word != "-":
                flag, has_value, value = word.partition("=")
                option = by_flag.get(flag)
                if option is None:
                    raise self._error(f"unknown option {flag}")
                if option.type is bool:
                    if has_value:
                        raise self._error(f"{flag} takes no value")
                    params[option.name] = True
                    continue
                if not has_value and (value := next(rest, None)) is None:
                    raise self._error(f"{flag} needs a value")
                try:
                    params[option.name] = option.convert(value)
                except ValueError as exc:
                    raise self._error(str(exc)) from None
            else:
                positional.append(word)
        if len(positional) < len(self.arguments):
            raise self._error(f"missing {self.arguments[len(positional)].upper()}")
        if len(positional) > len(self.arguments):
            raise self._error(f"unexpected argument {positional[len(self.arguments)]!r}")
        return Request(self.name, dict(zip(self.arguments, positional)) | params)

    def _error(self, what: str) -> ConfigError:
        return ConfigError(f"{self.name}: {what} (usage: {self.usage})")


ACTION_OPTIONS = (  # what the testbed adds to Xen's actions
    Option("timeout_ms", "Rendezvous timeout in virtual ms (default: Xen's 30).", float, 0, above=True, metavar="MS"),
    Option("from_vcpu", "vCPU that schedules the work (the first one in becomes master).", int, 0, default=0,
           metavar="N"),
    Option("nodeps", "Skip the build-id dependency check.", default=False),
)
VERBS = {verb.name: verb for verb in (
    Verb("upload", "Upload FILE as payload NAME.", ("name", "file")),
    Verb("list", "List the uploaded payloads and their states."),
    Verb("load", "Upload FILE (named after it) and apply it; unload it if that fails.", ("file",), ACTION_OPTIONS),
    Verb("apply", "Apply payload NAME (CHECKED -> APPLIED).", ("name",), ACTION_OPTIONS),
    Verb("revert", "Revert payload NAME, the top of the applied stack (APPLIED -> CHECKED).", ("name",),
         ACTION_OPTIONS),
    Verb("unload", "Unload payload NAME (CHECKED only).", ("name",)),
    Verb("replace", "Revert every applied payload and apply NAME, in one quiesced window.", ("name",),
         ACTION_OPTIONS),
)}


def parse(line: str | list[str]) -> Request:
    """Parse an operator command line (a string, or its words); ConfigError when it is not one."""
    try:
        words = shlex.split(line) if isinstance(line, str) else list(line)
    except ValueError as exc:
        raise ConfigError(f"cannot split {line!r}: {exc}") from None
    if not words:
        raise ConfigError("empty command line")
    verb = VERBS.get(words[0])
    if verb is None:
        raise ConfigError(f"unknown command {words[0]!r} (one of {', '.join(VERBS)})")
    return verb.parse(words[1:])
