//go:build tools

// Keeps the manager's packages in this module's graph for `go mod tidy`.
package tools

import _ "github.com/kserve/kserve/cmd/manager"
