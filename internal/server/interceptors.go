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
// the rule and the policy generation that decided (for the audit log, and
// for streams that keep a decision).
type Authorizer interface {
	Decide(principal, topic, action string) (auth.Decision, error)
	// Generation returns the generation of the policy in force and a
	// channel closed when a reload replaces it. Streams call it for every
	// message: it must be cheap (an atomic load).
	Generation() (uint64, <-chan struct{})
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

// check authorizes principal for a request of method and, if keep, returns
// the grant; requests of methods outside log.v1 (health, reflection) need
// no rule, and get a nil grant.
func (g *guard) check(ctx context.Context, principal, method string, req any, keep bool) (*grant, error) {
	action, ok := methodActions[method]
	if !ok {
		if _, list := listActions[method]; list {
			return nil, nil
		}
		if strings.HasPrefix(method, "/log.v1.") {
			return nil, status.Errorf(codes.PermissionDenied, "no access rule for method %s", method)
		}
		return nil, nil
	}
	tr, ok := req.(topicRequest)
	if !ok {
		return nil, status.Errorf(codes.Internal, "request of %s has no topic", method)
	}
	if action == auth.Admin && tr.GetTopic() == "" {
		// Admin calls name their topic: "" is not the default one here.
		return nil, toStatus(log.ValidateTopic(""), "", nil)
	}
	if !keep {
		return nil, g.authorize(ctx, principal, tr.GetTopic(), action)
	}
	return g.grant(ctx, principal, tr.GetTopic(), action)
}

// authorize checks that principal may do action on the topic a request
// names ("" is the default topic). Its errors are statuses.
func (g *guard) authorize(ctx context.Context, principal, topicName, action string) error {
	_, _, err := g.authorizeTopic(ctx, principal, topicName, action)
	return err
}

// authorizeTopic authorizes as authorize does, and returns the topic and
// the generation of the policy that allowed it.
func (g *guard) authorizeTopic(ctx context.Context, principal, topicName, action string) (string, uint64, error) {
	topic, err := resolveTopic(topicName)
	if err != nil {
		return "", 0, err
	}
	callInfoFrom(ctx).setTopic(topic)
	gen, err := g.decide(ctx, principal, topic, action)
	return topic, gen, err
}

// grant authorizes as authorize does, and returns the authorization for a
// stream to keep (see grant).
func (g *guard) grant(ctx context.Context, principal, topicName, action string) (*grant, error) {
	topic, gen, err := g.authorizeTopic(ctx, principal, topicName, action)
	if err != nil {
		return nil, err
	}
	gr := &grant{g: g, ctx: ctx, principal: principal, topic: topic, action: action}
	gr.gen.Store(gen)
	return gr, nil
}

// decide is the one authorization check behind the gRPC interceptors, the
// HTTP API and the grants streams keep: a denial is counted and audited.
// It returns the generation of the policy that allowed the call, or a
// status.
func (g *guard) decide(ctx context.Context, principal, topic, action string) (uint64, error) {
	d, err := g.authz.Decide(principal, topic, action)
	if err != nil {
		return 0, toStatus(err, topic, nil)
	}
	if !d.Allowed {
		g.obs.Denied(ctx, principal, topic, action)
		g.audit.record(ctx, principal, action, topic, false, d.Rule)
		return 0, toStatus(d.Err(principal, topic, action), topic, nil)
	}
	if action == auth.Admin {
		// Every admin action is audited, allowed or not.
		g.audit.record(ctx, principal, action, topic, true, d.Rule)
	}
	return d.Generation, nil
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
	if _, err := g.check(ctx, principal, info.FullMethod, req, false); err != nil {
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
	s := &guardedStream{
		ServerStream: ss,
		ctx:          context.WithValue(ss.Context(), principalKey{}, principal),
		g:            g,
		principal:    principal,
		method:       info.FullMethod,
		follows:      methodActions[info.FullMethod] == auth.Consume,
	}
	if s.follows {
		var cancel context.CancelCauseFunc
		s.ctx, cancel = context.WithCancelCause(s.ctx)
		defer cancel(nil)
		s.revoke = cancel
	}
	return handler(srv, s)
}

// guardedStream authorizes every message received, since each request of
// a stream may name another topic. It keeps the grant of the last topic
// allowed, which holds until the policy is reloaded (see grant). A stream
// that follows a topic (ConsumeStream: its one request names it) also
// checks the grant before each message it sends, and ends with the
// denial, even while it waits for records, when a reload revokes it.
type guardedStream struct {
	grpc.ServerStream
	ctx       context.Context
	g         *guard
	principal string
	method    string
	// last is the grant for lastTopic, the topic of the last request
	// received as the request spelled it; nil before the first.
	last      *grant
	lastTopic string
	follows   bool
	revoke    context.CancelCauseFunc // cancels ctx; set if follows
}

func (s *guardedStream) Context() context.Context { return s.ctx }

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	tr, ok := m.(topicRequest)
	if ok && s.last != nil && tr.GetTopic() == s.lastTopic {
		return s.last.check()
	}
	gr, err := s.g.check(s.ctx, s.principal, s.method, m, true)
	if err != nil || gr == nil {
		return err
	}
	s.last, s.lastTopic = gr, tr.GetTopic()
	if s.follows {
		gr.cancelOnRevoke(s.ctx, s.revoke)
	}
	return nil
}

// SendMsg sends m if the stream follows a topic it may still read, or
// returns the denial.
func (s *guardedStream) SendMsg(m any) error {
	if s.follows && s.last != nil {
		if err := s.last.check(); err != nil {
			return err
		}
	}
	return s.ServerStream.SendMsg(m)
}
