"""An ingress controller for the devcluster: it watches Ingresses of its class, their Services
and EndpointSlices, and drives nginx (Debian's package) to route by host and path to the ready
endpoints, i.e. to the pods on the real nodes at their pod IPs (`devcluster.common.podnet`)."""
