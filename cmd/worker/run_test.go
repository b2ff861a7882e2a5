package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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

// TestFlagMistakesAreUsageErrors: every mistake in the flags is a usage
// error (exit 2) that names its flag, found before Redis is dialled.
func TestFlagMistakesAreUsageErrors(t *testing.T) {
	t.Parallel()
	key := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(key, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--redis-url", "redis://127.0.0.1:1/0", "--api-key-file", key}
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--timeout", "5m"}, "--timeout 5m0s must be shorter than --shutdown-timeout"},
		{[]string{"--timeout", "30s", "--shutdown-timeout", "25s"}, "--timeout 30s must be shorter than --shutdown-timeout 25s"},
		{[]string{"--timeout", "3m", "--shutdown-timeout", "5m"}, "--timeout 3m0s must be shorter than the task timeout"},
		{[]string{"--concurrency", "0"}, "--concurrency"},
		{[]string{"--burst", "0"}, "--burst"},
	} {
		err := run(context.Background(), append(slices.Clone(base), tc.args...), io.Discard, io.Discard)
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("worker %v: error %v, want a usage error naming %s", tc.args, err, tc.flag)
		}
	}
}
