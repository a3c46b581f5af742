"""`xsplice-emu livepatch VERB ARGS [VERB ARGS]...`: xen-livepatch on a fresh machine.

The verbs, their options and their help come from the library's `verbs.VERBS`;
the words after the machine options are parsed by `verbs.parse_chain`.
"""

from __future__ import annotations

import sys

import click

from ..control.session import Session
from ..control.verbs import VERBS, Verb, parse_chain
from ..engines import ENGINES
from ..files import check_destination
from .common import machine_options, print_outcome, reports_errors

VERB_OPTIONS = {option.flag: option for verb in VERBS.values() for option in verb.options}


class _VerbsCommand(click.Command):
    """A command whose help goes on with the verbs and their options."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Verbs"):
            formatter.write_dl([(verb.synopsis, verb.help) for verb in VERBS.values()])
        with formatter.section("Options of the verbs"):
            formatter.write_dl([(option.form, option.described) for option in VERB_OPTIONS.values()])
        formatter.write_paragraph()
        formatter.write_text(f"`{ctx.command_path} VERB --help` shows one verb.")


@click.command(cls=_VerbsCommand, no_args_is_help=True, context_settings={"allow_interspersed_args": False})
@machine_options
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False), help="Write the JSON Lines trace here.")
@click.option("-q", "--quiet", is_flag=True, help="Print only what Xen's tool prints, not Xen's log lines nor the "
                                                  "testbed's remarks.")
@click.argument("words", nargs=-1, required=True, type=click.UNPROCESSED, metavar="VERB ARGS [VERB ARGS]...")
@click.pass_context
@reports_errors
def livepatch(ctx: click.Context, words, vcpus, seed, firmware, xen_syms, engine, boot_ms, clock_mhz, timer_hz,
              no_oracle, trace_path, quiet):
    """Boot a machine, then run xen-livepatch commands on it in order.

    \b
    Example: xsplice-emu livepatch --vcpus 8 load payloads/build/xen_hello_world.livepatch list
    Each command prints what Xen's tool prints; the first one that fails
    ends the run with its exit status (1, or 2 for EAGAIN/EBUSY).
    """
    if "--help" in words:
        _verb_help(ctx, words[:words.index("--help")])
    requests = parse_chain(words)
    if trace_path:
        check_destination(trace_path)
    session = Session(vcpus=vcpus, seed=seed, firmware=firmware, xen_syms=xen_syms, boot_ms=boot_ms,
                      oracle=not no_oracle, clock_mhz=clock_mhz, timer_hz=timer_hz, engine=engine or ENGINES[0])
    exit_code = 0
    try:
        for request in requests:
            outcome = session.command(request)
            print_outcome(outcome, quiet=quiet)
            if outcome.exit_code:
                exit_code = outcome.exit_code
                break
    finally:  # the trace of a run the guest stopped (a fault) is what shows why
        if trace_path:
            session.machine.trace.write(trace_path)
    sys.exit(exit_code)


def _verb_help(ctx: click.Context, before: tuple[str, ...]) -> None:
    """Print the help of the last verb before `--help` (else the command's) and exit."""
    verbs = [VERBS[word] for word in before if word in VERBS]
    if not verbs:
        click.echo(ctx.get_help())
        ctx.exit()
    verb: Verb = verbs[-1]
    formatter = ctx.make_formatter()
    formatter.write(f"Usage: {ctx.command_path} [OPTIONS] {verb.usage}\n")
    formatter.write_paragraph()
    with formatter.indentation():
        formatter.write_text(verb.help)
    if verb.options:
        with formatter.section("Options"):
            formatter.write_dl([(option.form, option.described) for option in verb.options])
    click.echo(formatter.getvalue().rstrip("\n"))
    ctx.exit()
