"""Exo-OS: a hosted microkernel operating environment on Linux.

The kernel is one Python process; every application, service and agent is a real,
sandboxed Linux process holding only the capabilities the kernel granted it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
