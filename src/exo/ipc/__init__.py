"""exo.ipc"""
