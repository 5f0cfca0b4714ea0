"""Serving side of RecModel: features, ranking model, ranking core, and two thin servers."""

FORMAT_VERSION = 1
