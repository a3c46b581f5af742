"""Writing payloads: building them, reading them back, the pre-flight check, and Xen's own test payloads."""
