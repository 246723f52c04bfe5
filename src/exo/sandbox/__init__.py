"""exo.sandbox"""
