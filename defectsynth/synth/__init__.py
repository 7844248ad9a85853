"""Defect generators, one per file, found by name through the registry."""
