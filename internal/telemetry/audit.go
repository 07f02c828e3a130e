package telemetry

import (
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewAuditLogger returns the audit log: a logger with a sink of its own
// that writes one JSON object per line, with the entry's time under
// "time" and its message under "msg" (no level, no caller). path is a
// file, appended to and created with mode 0600 (an existing file keeps
// its mode), or "-" or "stderr" for the standard error; "" turns the
// audit log off: the logger is nil. Nothing is buffered: each entry is
// one write(2) as it is logged, so `tail -f` shows it at once and
// concurrent writers never interleave within a line. close syncs and
// closes the file (for stderr or "", it does nothing); entries logged
// after it are lost and reported on stderr. The logger is safe for
// concurrent use.
func NewAuditLogger(path string) (logger *zap.Logger, close func() error, err error) {
	var ws zapcore.WriteSyncer
	switch path {
	case "":
		return nil, func() error { return nil }, nil
	case "-", "stderr":
		ws = zapcore.Lock(os.Stderr)
		close = func() error { return nil }
	default:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("telemetry: audit log: %w", err)
		}
		ws = zapcore.Lock(f)
		close = func() error {
			serr := f.Sync()
			if err := f.Close(); err != nil {
				return fmt.Errorf("telemetry: audit log: %w", err)
			}
			if serr != nil {
				return fmt.Errorf("telemetry: audit log: %w", serr)
			}
			return nil
		}
	}
	ec := zapcore.EncoderConfig{
		TimeKey:        "time",
		MessageKey:     "msg",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeTime:     zapcore.ISO8601TimeEncoder,
		EncodeDuration: zapcore.StringDurationEncoder,
	}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(ec), ws, zapcore.DebugLevel)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(os.Stderr))), close, nil
}
