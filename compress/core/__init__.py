"""Shared machinery: errors, config base, registry, run directories and atomic IO.

Nothing in this package imports torch, so the CLI stays fast to start.
"""
