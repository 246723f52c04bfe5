"""The kernel's subsystems, one module each; ``exo.kernel.boottable`` lists them."""
