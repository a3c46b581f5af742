"""The shell's prompt at a terminal (prompt_toolkit): history and completion. Imported only when the shell runs
at one (prompt_toolkit takes ~0.15 s to import, which every other command would pay)."""

from __future__ import annotations

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory

from ..control.session import Session
from ..files import file_errors
from ..provision.cache import cache_dir
from .shell import commands

HISTORY = "shell_history"
"""The prompt's history file, in the cache directory ($XDG_CACHE_HOME/xsplice-emu, else ~/.cache/xsplice-emu)."""


def prompt_session(session: Session, **terminal) -> PromptSession[str]:
    """The interactive prompt: history in the cache directory, and completion on Tab as readline does it (a
    unique completion is inserted, several are listed); `terminal` may give prompt_toolkit's input and output."""
    history = cache_dir() / HISTORY
    with file_errors(history.parent, "make the directory"):
        history.parent.mkdir(parents=True, exist_ok=True)
    return PromptSession(history=FileHistory(str(history)), completer=ShellCompleter(session),
                         complete_while_typing=False, **terminal)


def prompted(prompt: PromptSession):
    """The lines typed at `prompt` until end of input (Ctrl-C drops the line being typed)."""
    while True:
        try:
            yield prompt.prompt("xsplice> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return


class ShellCompleter(Completer):
    """Completes command names, then payload names, vCPU numbers or files by the command's arguments, and the
    keyword words (`expect=`) of a step kind not given yet."""

    def __init__(self, session: Session):
        self.session = session
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event):
        text = document.text_before_cursor
        words = text.split()
        known = commands()
        if not words or (len(words) == 1 and not text.endswith(" ")):
            yield from self._words(words[0] if words else "", known)
            return
        current = "" if text.endswith(" ") else words[-1]
        command = known.get(words[0])
        arguments, keywords = (command.arguments, command.keywords) if command else ([], [])
        before = words[1:-1] if current else words[1:]
        given = {word.partition("=")[0] + "=" for word in before}
        yield from self._words(current, [keyword for keyword in keywords if keyword not in given])
        position = len([word for word in before if word.partition("=")[0] + "=" not in keywords]) + 1
        if position - 1 >= len(arguments):
            return
        argument = arguments[position - 1]
        if argument == "NAME":
            yield from self._words(current, [p.name for p in self.session.livepatch.list()])
        elif argument == "VCPU":
            yield from self._words(current, [str(vcpu) for vcpu in range(len(self.session.machine.vcpus))])
        elif argument == "COMMAND":
            yield from self._words(current, known)
        elif argument == "FILE":
            yield from self.paths.get_completions(Document(current, len(current)), complete_event)
        elif argument.islower():
            yield from self._words(current, [argument])

    @staticmethod
    def _words(prefix: str, candidates):
        for word in candidates:
            if word.startswith(prefix):
                yield Completion(word, start_position=-len(prefix))
