"""`xsplice-emu livepatch VERB ARGS [VERB ARGS]...`: xen-livepatch on a fresh machine."""

from __future__ import annotations

import sys

import click

from ..session import Session
from ..verbs import VERBS, Option, Request, Verb
from .common import machine_options, print_outcome, reports_errors


@click.group(chain=True)
@machine_options
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False), help="Write the JSON Lines trace here.")
def livepatch(**_options):
    """Boot a machine, then run xen-livepatch commands on it in order.

    \b
    Example: xsplice-emu livepatch --vcpus 8 load payloads/build/xen_hello_world.livepatch list
    Each command prints what Xen's tool prints; the first one that fails
    ends the run with its exit status (1, or 2 for EAGAIN/EBUSY).
    """


@livepatch.result_callback()
@reports_errors
def _run(requests: list[Request], vcpus, seed, firmware, boot_ms, trace_path):
    session = Session(vcpus=vcpus, seed=seed, firmware=firmware, boot_ms=boot_ms)
    exit_code = 0
    for request in requests:
        outcome = session.command(request)
        print_outcome(outcome)
        if outcome.exit_code:
            exit_code = outcome.exit_code
            break
    if trace_path:
        session.machine.trace.write(trace_path)
    sys.exit(exit_code)


def verb_command(verb: Verb) -> click.Command:
    """The click command of one operator verb, made from its spec."""
    params = [click.Argument([argument]) for argument in verb.arguments]
    return click.Command(verb.name, help=verb.help, params=params + [_option(option) for option in verb.options],
                         callback=lambda **values: Request(verb.name, values))


def _option(option: Option) -> click.Option:
    if option.type is bool:
        return click.Option([option.flag], is_flag=True, help=option.help)
    kind = click.FloatRange if option.type is float else click.IntRange
    return click.Option([option.flag], type=kind(min=option.minimum, min_open=option.above), default=option.default,
                        show_default=option.default is not None, metavar=option.metavar, help=option.help)


for _verb in VERBS.values():
    livepatch.add_command(verb_command(_verb))
