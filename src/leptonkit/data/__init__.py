"""Data preparation: read raw files, clean, de-duplicate, de-identify, split, and document them in a manifest."""

from leptonkit.data.manifest import read as read_manifest
from leptonkit.data.prepare import prepare

__all__ = ["prepare", "read_manifest"]
