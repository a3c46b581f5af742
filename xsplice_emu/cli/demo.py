"""`xsplice-emu demo`: Xen's test sequence, from the payloads built into the cache."""

from __future__ import annotations

import click

from ..authoring.xen_tests import DEMO_SCENARIO, xen_tests
from .common import reports_errors
from .run import run


@click.command()
@click.pass_context
@reports_errors
def demo(ctx):
    """Run Xen's livepatch test sequence on 8 vCPUs (payloads and firmware built on first use)."""
    ctx.invoke(run, scenarios=(str(xen_tests() / "scenarios" / DEMO_SCENARIO),))
