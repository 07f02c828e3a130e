package server

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/auth"
	"github.com/logd/logd/internal/log"
)

// Authorizer decides whether principal may do action on topic, and names
// the rule that decided (for the audit log).
type Authorizer interface {
	Decide(principal, topic, action string) (auth.Decision, error)
}

var _ Authorizer = (*auth.Authorizer)(nil)

// methodActions maps each log.v1 method to the action it needs on the
// request's topic. A log.v1 method missing here and from listActions is
// refused.
var methodActions = map[string]string{
	logv1.Log_Produce_FullMethodName:         auth.Produce,
	logv1.Log_ProduceStream_FullMethodName:   auth.Produce,
	logv1.Log_Consume_FullMethodName:         auth.Consume,
	logv1.Log_ConsumeStream_FullMethodName:   auth.Consume,
	logv1.Admin_DescribeTopic_FullMethodName: auth.Admin,
	logv1.Admin_DeleteTopic_FullMethodName:   auth.Admin,
}

// listActions maps the log.v1 methods whose requests name no topic to
// the action the caller needs on each topic they answer with: the guard
// lets the call in, and the handler shows only the topics guard.visible
// returns.
var listActions = map[string]string{
	logv1.Admin_ListTopics_FullMethodName: auth.Admin,
}

type principalKey struct{}

// Principal returns the authenticated principal of a call's context.
func Principal(ctx context.Context) (string, bool) {
	p, ok := ctx.Value(principalKey{}).(string)
	return p, ok
}

// principalFromPeer returns the subject CN of the verified client
// certificate of the call.
func principalFromPeer(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no peer information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "connection is not TLS")
	}
	chains := ti.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return "", status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	cn := chains[0][0].Subject.CommonName
	if cn == "" {
		return "", status.Error(codes.Unauthenticated, "client certificate has no subject CN")
	}
	return cn, nil
}

// topicRequest is a request that names a topic.
type topicRequest interface{ GetTopic() string }

// resolveTopic returns the topic a request names, "default" if none, or
// an InvalidArgument status.
func resolveTopic(name string) (string, error) {
	if name == "" {
		return log.DefaultTopic, nil
	}
	if err := log.ValidateTopic(name); err != nil {
		return "", toStatus(err, "", nil)
	}
	return name, nil
}

// guard authenticates and authorizes calls.
type guard struct {
	authz Authorizer
	obs   Observer
	audit auditor
}

// check authorizes principal for a request of method; requests of
// methods outside log.v1 (health, reflection) need no rule.
func (g *guard) check(ctx context.Context, principal, method string, req any) error {
	action, ok := methodActions[method]
	if !ok {
		if _, list := listActions[method]; list {
			return nil
		}
		if strings.HasPrefix(method, "/log.v1.") {
			return status.Errorf(codes.PermissionDenied, "no access rule for method %s", method)
		}
		return nil
	}
	tr, ok := req.(topicRequest)
	if !ok {
		return status.Errorf(codes.Internal, "request of %s has no topic", method)
	}
	if action == auth.Admin && tr.GetTopic() == "" {
		// Admin calls name their topic: "" is not the default one here.
		return toStatus(log.ValidateTopic(""), "", nil)
	}
	return g.authorize(ctx, principal, tr.GetTopic(), action)
}

// authorize checks that principal may do action on the topic a request
// names ("" is the default topic). It is the one check behind both the
// gRPC interceptors and the HTTP API; its errors are statuses.
func (g *guard) authorize(ctx context.Context, principal, topicName, action string) error {
	topic, err := resolveTopic(topicName)
	if err != nil {
		return err
	}
	callInfoFrom(ctx).setTopic(topic)
	d, err := g.authz.Decide(principal, topic, action)
	if err != nil {
		return toStatus(err, topic, nil)
	}
	if !d.Allowed {
		g.obs.Denied(ctx, principal, topic, action)
		g.audit.record(ctx, principal, action, topic, false, d.Rule)
		return toStatus(d.Err(principal, topic, action), topic, nil)
	}
	if action == auth.Admin {
		// Every admin action is audited, allowed or not.
		g.audit.record(ctx, principal, action, topic, true, d.Rule)
	}
	return nil
}

// visible returns the topics of names on which principal may do action,
// for a call that lists topics (listActions): one decision per topic,
// and one audit entry for the whole listing, on the topic pattern
// (prefix + "*") with the rules that allowed what it shows. Topics it
// leaves out are not denials: they count in no metric. Its errors are
// statuses.
func (g *guard) visible(ctx context.Context, principal, prefix, action string, names []string) ([]string, error) {
	var shown, rules []string
	for _, name := range names {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		d, err := g.authz.Decide(principal, name, action)
		if err != nil {
			return nil, toStatus(err, name, nil)
		}
		if d.Allowed {
			shown = append(shown, name)
			if !slices.Contains(rules, d.Rule) {
				rules = append(rules, d.Rule)
			}
		}
	}
	pattern := prefix + "*"
	callInfoFrom(ctx).setTopic(pattern)
	g.audit.record(ctx, principal, action, pattern, true, strings.Join(rules, " | "))
	return shown, nil
}

func (g *guard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	principal, err := principalFromPeer(ctx)
	if err != nil {
		return nil, err
	}
	callInfoFrom(ctx).setPrincipal(principal)
	ctx = context.WithValue(ctx, principalKey{}, principal)
	if err := g.check(ctx, principal, info.FullMethod, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (g *guard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	principal, err := principalFromPeer(ss.Context())
	if err != nil {
		return err
	}
	callInfoFrom(ss.Context()).setPrincipal(principal)
	return handler(srv, &guardedStream{
		ServerStream: ss,
		ctx:          context.WithValue(ss.Context(), principalKey{}, principal),
		g:            g,
		principal:    principal,
		method:       info.FullMethod,
	})
}

// guardedStream authorizes every message received, since each request of
// a stream may name another topic. It remembers the last topic allowed.
type guardedStream struct {
	grpc.ServerStream
	ctx       context.Context
	g         *guard
	principal string
	method    string
	allowed   string
	anyOK     bool
}

func (s *guardedStream) Context() context.Context { return s.ctx }

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if tr, ok := m.(topicRequest); ok && s.anyOK && tr.GetTopic() == s.allowed {
		return nil
	}
	if err := s.g.check(s.ctx, s.principal, s.method, m); err != nil {
		return err
	}
	if tr, ok := m.(topicRequest); ok {
		s.allowed, s.anyOK = tr.GetTopic(), true
	}
	return nil
}
