"""Hosted drivers shipped as module sources (each directory: ``exopkg.toml`` and its
entry), built into signed packages with ``exo build DIR`` like any module."""
