"""A real node: the kubelet at the cluster's Kubernetes version, containerd 2.x with runc, CNI's
bridge on a Linux bridge of this machine, kube-proxy (nftables) and CoreDNS. Its pods are real
containers of images pulled from the local registry, in network namespaces of their own."""
