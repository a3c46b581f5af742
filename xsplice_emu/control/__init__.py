"""Driving a live machine: the session (a machine and its engine), Xen's `xen-livepatch` tool and its verbs."""
