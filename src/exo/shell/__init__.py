"""exo.shell"""
