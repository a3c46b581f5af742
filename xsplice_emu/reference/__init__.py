"""Real Xen as the reference: a scenario's livepatch steps on Debian's Xen 4.17 under QEMU and on the testbed,
and their differences.

    packages  what the reference boots, from Debian's packages (and installing QEMU)
    plan      each scenario step as dom0 runs it, or skipped
    dom0      dom0's kernel and initrd (busybox, xen-livepatch, payloads, /init)
    qemu      the QEMU run and its console, step by step
    compare   the testbed's run and the differences
"""

from .compare import Comparison, Difference, compare_scenario
from .packages import install_command, install_qemu
from .qemu import default_smp

__all__ = ["Comparison", "Difference", "compare_scenario", "default_smp", "install_command", "install_qemu"]
