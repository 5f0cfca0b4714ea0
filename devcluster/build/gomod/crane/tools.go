//go:build tools

// Builds crane (go-containerregistry), whose `crane registry serve` is the test cluster's local
// OCI registry, from the Go module proxy.
package tools

import _ "github.com/google/go-containerregistry/cmd/crane"
