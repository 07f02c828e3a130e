// Package server is logd's service: the log.v1.Log gRPC API, the
// log.v1.Admin API (admin.go: list, describe and delete topics) and the
// JSON-over-HTTPS API (httpapi.go) on top of the storage engine, behind
// mutual TLS and casbin authorization. Every admin action is written to
// the audit log (auditor), allowed or denied.
//
// A gRPC call passes TLS (the server requires and verifies a client
// certificate) → the OpenCensus stats handler (a span and the gRPC views)
// → the call's log line (logging.go) → the quotas, if any, on calls a
// second and open streams of the principal, the certificate's subject CN
// (quota.go)
// → authentication and authorization (principal, topic, action) → the
// handler, where the byte rates and topic caps apply → the storage
// engine. An HTTP request takes the same path through its own middleware,
// and both APIs share the authorization (guard.authorize), the quotas
// (quotaGuard) and the operations (service.produce, read, follow).
// Domain errors become gRPC status codes in one place (status.go), and
// those become HTTP codes in one place (httpError). Observer receives what
// happens, for metrics.
//
// The policy may be reloaded while streams are open. A stream keeps its
// authorization as a grant (grant.go) that holds while the policy
// generation that allowed it is in force, one atomic load per message;
// after a reload it is decided again before the next message passes, and
// a following stream (ConsumeStream, the HTTP follow) that the new policy
// refuses ends with PermissionDenied at once.
//
// A Server is safe for concurrent use; Serve, Shutdown and the handlers
// may run at the same time.
package server
