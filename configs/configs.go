// Package configs embeds logd's default configuration files: the cfssl
// CSR and signing configs used by `make gencert` (and by logd to make
// certificates on first use), and the casbin access model and policy.
// The files are read-only; the package is safe for concurrent use.
package configs

import "embed"

// FS holds ca-csr.json, ca-config.json, server-csr.json, client-csr.json,
// model.conf and policy.csv.
//
//go:embed *.json model.conf policy.csv
var FS embed.FS
