"""Dialogue data: the tsv formats, feature construction, the feature database and loaders."""
