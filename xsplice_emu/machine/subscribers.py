"""Who is told of a machine's events: one list of subscribers per kind of event, both engines' machines alike.

A package that must act when something happens in the guest (the oracle on an NMI, the controller on a store
into code) subscribes to that topic; the machine notifies the topic's subscribers, in the order they
subscribed, when it happens. A topic's type says what its subscribers are called with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec

from ..errors import GuestFault
from .vcpu import Vcpu

P = ParamSpec("P")


@dataclass(frozen=True, eq=False)
class Topic(Generic[P]):
    """A kind of machine event; its subscribers are called with `P`."""

    name: str


CODE_WRITE: Topic[[Vcpu, int, bytes]] = Topic("code write")
"""A guest store into code: the writing vCPU, the text address and the bytes about to be overwritten."""
CRASH: Topic[[GuestFault]] = Topic("crash")
"""A guest fault stops the run (one a contained call recovers from does not), before it is raised."""
NMI: Topic[[Vcpu]] = Topic("nmi")
"""An NMI is delivered to the vCPU, right after its trace event."""
WATCH_HIT: Topic[[Vcpu, int, int]] = Topic("watch hit")
"""The vCPU is about to run a block overlapping a watched range: its address and size."""
UNSEEN_CODE: Topic[[Vcpu]] = Topic("unseen code")
"""The code written that the vCPU has not yet serialised on changed."""


class Subscribers:
    """The subscribers of one machine, by topic."""

    def __init__(self) -> None:
        self._by_topic: dict[Topic[Any], list[Callable[..., None]]] = {}

    def subscribe(self, topic: Topic[P], callback: Callable[P, None]) -> None:
        """Call `callback` whenever `topic` happens, after those that subscribed before."""
        self._by_topic.setdefault(topic, []).append(callback)

    def notify(self, topic: Topic[P], *args: P.args, **kwargs: P.kwargs) -> None:
        """`topic` happened: tell its subscribers."""
        for callback in self._by_topic.get(topic, ()):
            callback(*args, **kwargs)
