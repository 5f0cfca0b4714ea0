"""The control plane as one: `up` (idempotent), `down`, `info`."""
