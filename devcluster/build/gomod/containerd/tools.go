//go:build tools

// Builds containerd 2.x and its runc shim, the container runtime of the test cluster's real
// nodes, from the Go module proxy.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
)
