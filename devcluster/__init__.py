"""A local Kubernetes control plane built from the Go module proxy and run as processes.

`python -m devcluster build|up|down|status` drives it; tests use `devcluster.fixtures`.
"""
