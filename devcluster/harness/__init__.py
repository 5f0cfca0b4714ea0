"""Support for tests, the demo and the benchmark: fixtures, model-server launchers, helpers, the autoscaling loop."""
