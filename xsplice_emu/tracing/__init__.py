"""Reading, checking, summarising and exporting trace files (docs/trace-format.md).

The data model of the trace viewer and of `xsplice-emu trace`: it never
imports Textual.
"""

from .checkpoints import StateCheckpoints
from .export import export_chrome
from .kinds import EventKind, Field
from .reader import TraceFile
from .schema import HEADER
from .spans import Span, State, StateTracker, lane_spans, state_spans
from .summary import ActionSummary, Arrival, summarize

__all__ = [
    "HEADER",
    "ActionSummary",
    "Arrival",
    "EventKind",
    "Field",
    "Span",
    "StateCheckpoints",
    "State",
    "StateTracker",
    "TraceFile",
    "export_chrome",
    "lane_spans",
    "state_spans",
    "summarize",
]
