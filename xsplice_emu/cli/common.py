"""What every `xsplice-emu` command shares: the console and the error policy.

Only the cli package prints or exits. Library errors become one line on
stderr and exit status 1 (2 for bad usage).
"""

from __future__ import annotations

import sys
from functools import wraps

import click
from rich.console import Console

from ..errors import ConfigError, XspliceEmuError

out = Console(highlight=False, soft_wrap=True)
VCPU_COLOURS = ["cyan", "green", "yellow", "magenta", "blue", "red", "bright_cyan", "bright_green"]


def reports_errors(command):
    """Turn library errors into one clear line and an exit status."""
    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except XspliceEmuError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    return wrapper
