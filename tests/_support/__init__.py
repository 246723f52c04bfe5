"""Helpers shared by test directories (tests/system, tests/security, tests/modules...):
plain functions and context managers, imported as ``tests._support.NAME``."""
