"""The model registry: versions, aliases, lineage and verified files."""

from leptonkit.registry.refs import ModelRef, parse_ref
from leptonkit.registry.store import ModelVersion, Registry

__all__ = ["ModelRef", "ModelVersion", "Registry", "parse_ref"]
