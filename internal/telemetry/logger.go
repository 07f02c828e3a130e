package telemetry

import (
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger returns a logger writing to w (os.Stderr if nil) at level
// ("debug", "info", "warn" or "error"; "" means info) in format ("json",
// the default when "", or "console"). Times are ISO 8601, durations
// strings such as "1.5s"; entries carry the caller. Writes to w are
// serialized, so w need not be safe for concurrent use. The error names
// the bad level or format.
func NewLogger(level, format string, w io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	switch strings.ToLower(strings.TrimSpace(level)) {
	case "debug":
		lvl = zapcore.DebugLevel
	case "", "info":
		lvl = zapcore.InfoLevel
	case "warn", "warning":
		lvl = zapcore.WarnLevel
	case "error":
		lvl = zapcore.ErrorLevel
	default:
		return nil, fmt.Errorf("telemetry: log level %q: want debug, info, warn or error", level)
	}

	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	ec.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", "json":
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, fmt.Errorf("telemetry: log format %q: want json or console", format)
	}

	if w == nil {
		w = os.Stderr
	}
	ws := zapcore.Lock(zapcore.AddSync(w))
	return zap.New(zapcore.NewCore(enc, ws, lvl), zap.AddCaller(), zap.ErrorOutput(ws)), nil
}
