// Package server is logd's gRPC service: the log.v1.Log API on top of the
// storage engine, behind mutual TLS and casbin authorization.
//
// A request passes TLS (the server requires and verifies a client
// certificate) → the interceptors given in Config (logging, metrics) →
// authentication (the principal is the certificate's subject CN) →
// authorization (principal, topic, action) → the handler → the storage
// engine. Domain errors become gRPC status codes in one place (status.go).
//
// A Server is safe for concurrent use; Serve, Shutdown and the handlers
// may run at the same time.
package server
