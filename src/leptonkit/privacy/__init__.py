"""Privacy helpers shared by every stage: PII detection and de-identification."""

from leptonkit.privacy.pii import PiiDetector, PiiSpan, Pseudonymizer, redact

__all__ = ["PiiDetector", "PiiSpan", "Pseudonymizer", "redact"]
