"""The xen engine: Xen 4.17's own compiled livepatch code runs the rendezvous on every vCPU; the host provides
the platform (`platform.py`, `layout.py`), the devices (`devices.py`) and the hypercall bridge (`hypercall.py`)
and only observes (`engine.py`)."""

from .engine import XenLivepatch
from .machine import XenMachine

__all__ = ["XenLivepatch", "XenMachine"]
