package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// stopAfterWarn logs, then ends the wait the warning announces.
type stopAfterWarn struct {
	*slog.Logger
	cancel context.CancelFunc
}

func (l stopAfterWarn) Warn(msg string, args ...any) {
	l.Logger.Warn(msg, args...)
	l.cancel()
}

// TestOpenRedisLogsRetryInAsText: a duration in the log reads "500ms", as
// the handler's retry_in does, not a count of nanoseconds.
func TestOpenRedisLogsRetryInAsText(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := stopAfterWarn{slog.New(slog.NewJSONHandler(&buf, nil)), cancel}
	if _, err := openRedis(ctx, "redis://127.0.0.1:1/0", log); err == nil {
		t.Fatal("openRedis of a closed port: no error")
	}
	if want := `"retry_in":"500ms"`; !strings.Contains(buf.String(), want) {
		t.Errorf("log = %s, want it to hold %s", buf.String(), want)
	}
}
