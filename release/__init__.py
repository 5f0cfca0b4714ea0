"""Releases: what users install, rendered from the chart (`python -m release.manifests`)."""
