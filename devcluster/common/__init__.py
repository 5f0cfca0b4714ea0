"""What every layer above uses: PKI, kubeconfig, component command lines, ports, the pod network, API access."""
