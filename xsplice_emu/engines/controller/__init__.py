"""The controller engine: Xen's livepatch sysctl and rendezvous modelled in Python over the built-in
firmware (or a real image mapped beside it)."""

from .rendezvous import Rendezvous, Work
from .sysctl import Livepatch
from .uploaded import Payload

__all__ = ["Livepatch", "Payload", "Rendezvous", "Work"]
