"""What the testbed builds or fetches before it runs: the build cache, the shipped sources, the toolchain, the
built-in firmware, the libxenctrl stand-in, Debian's pinned Xen packages and Xen built from source."""
