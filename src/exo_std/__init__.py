"""exo_std: the native API that Exo applications import."""
