//go:build tools

// Builds vegeta, the HTTP load generator of the overload tests, from the Go module proxy.
package tools

import _ "github.com/tsenart/vegeta/v12"
