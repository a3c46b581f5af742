"""The trace viewer (`xsplice-emu view TRACE`): a Textual app over a trace file read lazily.

The Textual side, one widget or screen per module: `app` (TraceViewer, the
keys), `timeline` (the lanes), `ruler`, `detail`, `status`, `help_screen`,
`search_screen`, `summary_screen`. What they draw comes from modules that
never import Textual: `viewport` (time <-> columns), `frame` (the events,
states and actions of a viewport), `canvas` (lanes and ruler as styled
cells), `query` and `search` (filter and jumps), `bookmarks`, `actions`,
`figures`, `flow` (rich items side by side while they fit, never split),
`patch_site` and `symbols` (disassembly with names), `times`.
Nothing is imported here, so that importing a model module does not load
Textual.
"""
