// Package server is logd's service: the log.v1.Log gRPC API and the
// JSON-over-HTTPS API (httpapi.go) on top of the storage engine, behind
// mutual TLS and casbin authorization.
//
// A gRPC call passes TLS (the server requires and verifies a client
// certificate) → the OpenCensus stats handler (a span and the gRPC views)
// → the call's log line (logging.go) → the quotas on calls a second and
// open streams of the principal, the certificate's subject CN (quota.go)
// → authentication and authorization (principal, topic, action) → the
// handler, where the byte rates and topic caps apply → the storage
// engine. An HTTP request takes the same path through its own middleware,
// and both APIs share the authorization (guard.authorize), the quotas
// (quotaGuard) and the operations (service.produce, read, follow).
// Domain errors become gRPC status codes in one place (status.go), and
// those become HTTP codes in one place (httpError). Observer receives what
// happens, for metrics.
//
// A Server is safe for concurrent use; Serve, Shutdown and the handlers
// may run at the same time.
package server
