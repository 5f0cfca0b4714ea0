"""The cluster's nodes: KWOK's fake ones by spec, and real ones (`real`): a kubelet with containerd."""
