"""The engines that run livepatching on the machine: `controller` (the Python rendezvous over the built-in
firmware, `xsplice_emu.livepatch`) and `xen` (Xen's own compiled livepatch code on every vCPU, `engines.xen`)."""

ENGINES = ("controller", "xen")
"""What `[machine] engine` and `--engine` accept; the first is the default."""
