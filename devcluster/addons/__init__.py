"""The systems RecModel integrates with, as they run in the cluster: KServe, KEDA, Prometheus, an ingress controller."""
