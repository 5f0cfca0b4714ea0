"""The process nodes' agent: a small kubelet that runs model-server pods as local processes.

It registers its nodes (one CPU node, one labelled and tainted like a GPU node), keeps their
Leases fresh, watches the pods bound to them and runs each one: init containers to completion,
then the containers' command, args and environment as processes on the pod's loopback address
(`devcluster.common.podnet`), with its volumes as folders. It runs the pods' startup, readiness and
liveness probes against those processes and writes pod status as a kubelet does (IP, phase,
Ready, restarts). On deletion: SIGTERM, the grace period, SIGKILL, then the pod object goes.
"""
