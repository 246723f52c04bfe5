"""exo.mm"""
