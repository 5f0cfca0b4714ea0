"""Pure renderers: a parsed RecModel in, plain Kubernetes object dicts out. No API calls here."""
