"""Offline: generated or logged interaction data (`data`), training and warm-started
retraining (`train`), and what a training run reports (`evaluate`). Never imported by a server."""
