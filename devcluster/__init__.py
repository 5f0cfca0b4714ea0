"""A local Kubernetes control plane built from the Go module proxy and run as processes, in
layers by role (each imports only the ones below it; `make lint` checks it):

    harness        what tests, the demo and the benchmark use: fixtures, model-server launchers,
                   test helpers, the autoscaling loop
    controlplane   `up` / `down`: etcd, kube-apiserver, controller-manager, scheduler, KWOK,
                   the add-ons and the nodes, started and stopped together
    addons         the systems RecModel writes objects for: KServe, KEDA, Prometheus, and an
                   ingress controller
    nodes          the nodes: KWOK's fake ones, and real ones (kubelet, containerd, runc, a
                   fake-GPU device plugin) that run the pods of the images built here
    common         certificates, kubeconfig, component command lines, ports, the pod network,
                   API access and the informer (the operator's own)
    build          the Go wrapper modules and the versions they pin, built and cached

`python -m devcluster build|up|down|status` drives it; tests use `devcluster.harness.fixtures`.
"""
