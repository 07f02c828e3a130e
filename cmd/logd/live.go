package main

import (
	"go.uber.org/zap"

	"github.com/logd/logd/internal/auth"
	"github.com/logd/logd/internal/reload"
	"github.com/logd/logd/internal/telemetry"
)

// policySource is the ACL as a live configuration source: its model and
// policy files, reloaded into authz. There is none (false) when both are
// the embedded defaults, which never change.
func policySource(cfg *config, authz *auth.Authorizer) (reload.Source, bool) {
	if cfg.aclModel == "" && cfg.aclPolicy == "" {
		return reload.Source{}, false
	}
	return reload.Source{
		Name:  "acl policy",
		Paths: []string{cfg.aclModel, cfg.aclPolicy},
		Load:  authz.Reload,
	}, true
}

// onReload is the watcher's OnReload hook: it counts every reload of a
// live configuration file, and writes it to the audit log (if not nil)
// as an action of the operator, who changed the file or sent SIGHUP.
func onReload(metrics *telemetry.Metrics, audit *zap.Logger) func(string, reload.Trigger, error) {
	return func(source string, trigger reload.Trigger, err error) {
		metrics.Reloaded(source, err)
		if audit == nil {
			return
		}
		result := "ok"
		if err != nil {
			result = "failed"
		}
		f := []zap.Field{
			zap.String("principal", "operator"),
			zap.String("action", "reload"),
			zap.String("source", source),
			zap.String("trigger", string(trigger)),
			zap.String("result", result),
		}
		if err != nil {
			f = append(f, zap.Error(err))
		}
		audit.Info("audit", f...)
	}
}
