"""Marks this ``prefect`` package as statecore's shim, not Prefect's.

``statecore.compat.real_prefect()`` looks for this file to tell the shim from a real
Prefect install, so the shim never counts as one.
"""
