//go:build tools

// Builds runc, the OCI runtime under the real nodes' containerd, from the Go module proxy
// (Debian's runc 1.1 predates the runtime-spec version containerd 2.x writes).
package tools

import _ "github.com/opencontainers/runc"
