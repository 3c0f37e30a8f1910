"""Robustness: perturbed copies of inputs (typos, case, punctuation, synonyms, swapped personal data).

Scoring a model on them is :mod:`leptonkit.train.robustness`, beside the evaluators it reuses.
"""

from leptonkit.robustness.perturb import DEFAULT_RATE, PERTURBATIONS, parse_perturbations, perturb_records

__all__ = ["DEFAULT_RATE", "PERTURBATIONS", "parse_perturbations", "perturb_records"]
