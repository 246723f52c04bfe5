"""exo.kernel"""
