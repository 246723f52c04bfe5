"""POSIX-X: running unmodified Linux programs under Exo capabilities.

``table`` is the syscall table (every x86-64 syscall, its tier and what allows it),
``libc_map`` maps glibc functions to the syscalls they issue, ``analyze`` reads an ELF or a
script and says what it will need, ``run`` runs one as an Exo process with ``sandbox``
turning a manifest's ``[posix_x]`` table into sandbox settings, ``cli`` is the ``posix-x``
command line. Nothing here is imported at boot; the submodules load on use.
"""
