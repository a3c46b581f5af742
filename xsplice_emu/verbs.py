"""The operator's command lines: one click command per `xen-livepatch` verb.

The same commands parse a verb on the `xsplice-emu livepatch` command line,
in a scenario's `livepatch = "..."` step and at the shell prompt. Parsing
gives a `Request`; running it on an `OperatorTool` gives an `Outcome`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

import click

from .errors import ConfigError
from .operator import ACTION_VERBS, OperatorTool, Outcome


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


def _request(verb: str):
    def callback(**params) -> Request:
        return Request(verb, params)
    return callback


def _action_options(command):
    """--timeout-ms, --from-vcpu and --nodeps: what the testbed adds to Xen's actions."""
    command = click.option("--nodeps", is_flag=True, help="Skip the build-id dependency check.")(command)
    command = click.option("--from-vcpu", default=0, show_default=True, type=click.IntRange(min=0),
                           help="vCPU that schedules the work (the first one in becomes master).")(command)
    return click.option("--timeout-ms", type=click.FloatRange(min=0, min_open=True),
                        help="Rendezvous timeout in virtual ms (default: Xen's 30).")(command)


VERBS: dict[str, click.Command] = {
    "upload": click.Command("upload", callback=_request("upload"), help="Upload FILE as payload NAME.",
                            params=[click.Argument(["name"]), click.Argument(["file"])]),
    "list": click.Command("list", callback=_request("list"), help="List the uploaded payloads and their states."),
    "load": _action_options(click.Command("load", callback=_request("load"),
                                          help="Upload FILE (named after it) and apply it; unload it if that fails.",
                                          params=[click.Argument(["file"])])),
}
_ACTION_HELP = {
    "apply": "Apply payload NAME (CHECKED -> APPLIED).",
    "revert": "Revert payload NAME, the top of the applied stack (APPLIED -> CHECKED).",
    "unload": "Unload payload NAME (CHECKED only).",
    "replace": "Revert every applied payload and apply NAME, in one quiesced window.",
}
for _verb in ACTION_VERBS.values():
    _command = click.Command(_verb.name, callback=_request(_verb.name), params=[click.Argument(["name"])],
                             help=_ACTION_HELP[_verb.name])
    VERBS[_verb.name] = _command if _verb.name == "unload" else _action_options(_command)


def parse(line: str | list[str]) -> Request:
    """Parse an operator command line (a string, or its words); ConfigError when it is not one."""
    try:
        words = shlex.split(line) if isinstance(line, str) else list(line)
    except ValueError as exc:
        raise ConfigError(f"cannot split {line!r}: {exc}") from None
    if not words:
        raise ConfigError("empty command line")
    command = VERBS.get(words[0])
    if command is None:
        raise ConfigError(f"unknown command {words[0]!r} (one of {', '.join(VERBS)})")
    try:
        request = command.main(words[1:], prog_name=words[0], standalone_mode=False)
    except click.ClickException as exc:
        raise ConfigError(f"{shlex.join(words)}: {exc.format_message()}") from None
    if not isinstance(request, Request):
        raise ConfigError(f"{shlex.join(words)}: not a command to run")
    return request
