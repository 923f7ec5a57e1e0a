//go:build tools

// Package tools pins helm for scripts/helm.sh.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
