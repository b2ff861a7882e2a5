// Package logging builds the programs' slog loggers: text on a terminal,
// JSON otherwise, and an adapter that sends asynq's own log lines through
// the same logger.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/hibiken/asynq"
)

// New returns a logger writing to w at level ("debug", "info", "warn",
// "error"). It writes JSON unless w is a terminal.
func New(w io.Writer, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if IsTerminal(w) {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

// IsTerminal reports whether w is a character device such as a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Asynq adapts a slog.Logger to asynq.Logger.
type Asynq struct{ L *slog.Logger }

var _ asynq.Logger = Asynq{}

func (a Asynq) Debug(args ...any) { a.L.Debug(join(args), "component", "asynq") }
func (a Asynq) Info(args ...any)  { a.L.Info(join(args), "component", "asynq") }
func (a Asynq) Warn(args ...any)  { a.L.Warn(join(args), "component", "asynq") }
func (a Asynq) Error(args ...any) { a.L.Error(join(args), "component", "asynq") }

// Fatal logs at error level and exits, as asynq.Logger requires; asynq
// calls it only when it cannot go on.
func (a Asynq) Fatal(args ...any) {
	a.L.Error(join(args), "component", "asynq")
	os.Exit(1)
}

func join(args []any) string {
	return strings.TrimSpace(fmt.Sprint(args...))
}

// Redis adapts a slog.Logger to go-redis's internal logger, whose lines
// (pool dial retries) would otherwise go to stderr unstructured, ahead of
// the clear error the command prints.
type Redis struct{ L *slog.Logger }

func (r Redis) Printf(ctx context.Context, format string, v ...any) {
	r.L.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "redis")
}
