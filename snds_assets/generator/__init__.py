"""Synthetic CNAM deliveries: coherent persons, care and hospital stays for any catalog (SPEC §2).

``generate(GenerateOptions(out=...))`` writes ``<out>/<delivery_id>/`` with its data files and, last, its
``manifest.json``. With ``defects=True`` it also writes ``<out>/<delivery_id>.defects.json``, the ground truth
of the defects injected, beside (never inside) the delivery.
"""
from .core import generate
from .options import GenerateError, GenerateOptions, GenerateResult

__all__ = ["GenerateError", "GenerateOptions", "GenerateResult", "generate"]
