//go:build tools

// Keeps KEDA's operator and metrics API server in this module's graph for `go mod tidy`.
package tools

import (
	_ "github.com/kedacore/keda/v2/cmd/adapter"
	_ "github.com/kedacore/keda/v2/cmd/operator"
)
