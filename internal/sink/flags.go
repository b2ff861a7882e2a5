package sink

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// WebhookSecretEnv holds the webhook signing secret unless a file is named.
const WebhookSecretEnv = "ENROLLQ_WEBHOOK_SECRET"

// Flags binds the result sink settings to a command's flags, the same way
// in cmd/worker and cmd/enqueue. The webhook secret is never a flag: it
// comes from ENROLLQ_WEBHOOK_SECRET or the file --sink-secret-file names.
type Flags struct {
	target, table, secretFile string
}

// Register adds --sink, --sink-table and --sink-secret-file to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.target, "sink", os.Getenv("ENROLLQ_SINK"), "also hand each result, as it is stored, to this PostgreSQL (postgres://), MySQL (mysql://) table or webhook (https://) (env ENROLLQ_SINK)")
	fs.StringVar(&f.table, "sink-table", DefaultTable, "with a database --sink: the result table, created if missing")
	fs.StringVar(&f.secretFile, "sink-secret-file", "", "with a webhook --sink: read the signing secret from this file instead of "+WebhookSecretEnv)
}

// Set reports whether --sink names a sink.
func (f *Flags) Set() bool { return f.target != "" }

// Config returns the parsed settings, the webhook secret loaded. Errors
// never show the target, which may hold a password or a token.
func (f *Flags) Config() (ResultsConfig, error) {
	cfg := ResultsConfig{Target: f.target, Table: f.table}
	if !IsResultsTarget(f.target) {
		return cfg, errors.New("--sink: want a postgres://, mysql:// or https:// URL (write files with --out)")
	}
	if isWebURL(f.target) {
		secret, err := f.secret()
		if err != nil {
			return cfg, err
		}
		cfg.Webhook.Secret = secret
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("--sink: %w", err)
	}
	return cfg, nil
}

func (f *Flags) secret() ([]byte, error) {
	if f.secretFile == "" {
		return []byte(os.Getenv(WebhookSecretEnv)), nil
	}
	b, err := os.ReadFile(f.secretFile)
	if err != nil {
		return nil, fmt.Errorf("--sink-secret-file: %w", err)
	}
	return []byte(strings.TrimSpace(string(b))), nil
}
