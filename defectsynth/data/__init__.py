"""Data layer: MVTec layout, checks, download, demo data, split, manifests, cache."""
