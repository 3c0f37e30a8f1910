"""Privacy helpers shared by every stage: PII detection and de-identification (the registry's NER model for names
is wrapped by :mod:`leptonkit.registry.pii`)."""

from leptonkit.privacy.pii import EntityModel, PiiDetector, PiiSpan, Pseudonymizer

__all__ = ["EntityModel", "PiiDetector", "PiiSpan", "Pseudonymizer"]
