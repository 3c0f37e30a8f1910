"""Robustness: evaluation under perturbed inputs (typos, case, punctuation, synonyms, swapped personal data)."""

from leptonkit.robustness.perturb import DEFAULT_RATE, PERTURBATIONS, parse_perturbations, perturb_records

__all__ = ["DEFAULT_RATE", "PERTURBATIONS", "parse_perturbations", "perturb_records"]
