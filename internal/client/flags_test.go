package client_test

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/client"
)

// parseFlags registers the API flags on a fresh FlagSet and parses args.
func parseFlags(t *testing.T, args ...string) *client.Flags {
	t.Helper()
	var f client.Flags
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("Parse(%q): %v", args, err)
	}
	return &f
}

// clearAPIEnv unsets the variables the flags read, for the test's span.
func clearAPIEnv(t *testing.T) {
	t.Helper()
	for _, name := range []string{"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_WORKSPACE_ID"} {
		t.Setenv(name, "")
	}
}

func TestFlagsDefaults(t *testing.T) {
	clearAPIEnv(t)
	t.Setenv("ANTHROPIC_API_KEY", " "+testKey+"\n")

	cfg, err := parseFlags(t).Config(false)
	if err != nil {
		t.Fatalf("Config: %v", err)
	}
	if cfg.APIKey != testKey {
		t.Errorf("APIKey = %q, want the trimmed environment key", cfg.APIKey)
	}
	if cfg.BaseURL != client.DefaultBaseURL {
		t.Errorf("BaseURL = %q, want %q", cfg.BaseURL, client.DefaultBaseURL)
	}
	if cfg.Version != client.DefaultVersion {
		t.Errorf("Version = %q, want %q", cfg.Version, client.DefaultVersion)
	}
	if want := []string{client.DefaultBeta}; !slices.Equal(cfg.Betas, want) {
		t.Errorf("Betas = %q, want %q", cfg.Betas, want)
	}
	if cfg.Timeout != client.DefaultCallTimeout {
		t.Errorf("Timeout = %v, want %v", cfg.Timeout, client.DefaultCallTimeout)
	}
	if cfg.Endpoint != client.EnrollmentURL {
		t.Errorf("Endpoint = %q, want %q", cfg.Endpoint, client.EnrollmentURL)
	}
	if cfg.WorkspaceID != "" {
		t.Errorf("WorkspaceID = %q, want empty", cfg.WorkspaceID)
	}
}

func TestFlagsEnvironment(t *testing.T) {
	clearAPIEnv(t)
	t.Setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:8787")
	t.Setenv("ANTHROPIC_WORKSPACE_ID", "wrkspc_env")

	cfg, err := parseFlags(t).Config(true)
	if err != nil {
		t.Fatalf("Config: %v", err)
	}
	if cfg.BaseURL != "http://127.0.0.1:8787" {
		t.Errorf("BaseURL = %q, want the environment's", cfg.BaseURL)
	}
	if cfg.WorkspaceID != "wrkspc_env" {
		t.Errorf("WorkspaceID = %q, want the environment's", cfg.WorkspaceID)
	}

	cfg, err = parseFlags(t, "-base-url", "http://flag.test", "-workspace-id", "wrkspc_flag").Config(true)
	if err != nil {
		t.Fatalf("Config: %v", err)
	}
	if cfg.BaseURL != "http://flag.test" || cfg.WorkspaceID != "wrkspc_flag" {
		t.Errorf("BaseURL, WorkspaceID = %q, %q, want the flags' values over the environment", cfg.BaseURL, cfg.WorkspaceID)
	}
}

func TestFlagsValues(t *testing.T) {
	clearAPIEnv(t)
	f := parseFlags(t,
		"-api-version", "2026-10-21",
		"-beta", " user-profiles-2026-09-04, ,files-api-2025-04-14,",
		"-timeout", "3s",
		"-endpoint", "action_url",
	)
	cfg, err := f.Config(true)
	if err != nil {
		t.Fatalf("Config: %v", err)
	}
	if cfg.Version != "2026-10-21" {
		t.Errorf("Version = %q, want 2026-10-21", cfg.Version)
	}
	if want := []string{"user-profiles-2026-09-04", "files-api-2025-04-14"}; !slices.Equal(cfg.Betas, want) {
		t.Errorf("Betas = %q, want %q", cfg.Betas, want)
	}
	if cfg.Timeout != 3*time.Second {
		t.Errorf("Timeout = %v, want 3s", cfg.Timeout)
	}
	if cfg.Endpoint != client.ActionURL {
		t.Errorf("Endpoint = %q, want %q", cfg.Endpoint, client.ActionURL)
	}
	if cfg.APIKey != "" {
		t.Errorf("APIKey = %q, want none when withoutKey", cfg.APIKey)
	}

	// A second call must not repeat the betas.
	again, err := f.Config(true)
	if err != nil {
		t.Fatalf("second Config: %v", err)
	}
	if !slices.Equal(again.Betas, cfg.Betas) {
		t.Errorf("second Config Betas = %q, want %q", again.Betas, cfg.Betas)
	}
}

func TestFlagsKeyFile(t *testing.T) {
	clearAPIEnv(t)
	t.Setenv("ANTHROPIC_API_KEY", "sk-from-environment")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("\n"+testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg, err := parseFlags(t, "-api-key-file", keyFile).Config(false)
	if err != nil {
		t.Fatalf("Config: %v", err)
	}
	if cfg.APIKey != testKey {
		t.Errorf("APIKey = %q, want the file's trimmed key over the environment", cfg.APIKey)
	}
}

func TestFlagsErrors(t *testing.T) {
	clearAPIEnv(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name       string
		args       []string
		withoutKey bool
		wantErr    string
	}{
		{"unknown endpoint", []string{"-endpoint", "action_urls"}, true, "--endpoint"},
		{"zero timeout", []string{"-timeout", "0s"}, true, "--timeout"},
		{"negative timeout", []string{"-timeout", "-1s"}, true, "--timeout"},
		{"no key", nil, false, "ANTHROPIC_API_KEY"},
		{"missing key file", []string{"-api-key-file", filepath.Join(dir, "absent")}, false, "--api-key-file"},
		{"empty key file", []string{"-api-key-file", empty}, false, "--api-key-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlags(t, tc.args...).Config(tc.withoutKey)
			if err == nil {
				t.Fatalf("Config: got nil error, want one naming %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Config: error %q, want it to name %q", err, tc.wantErr)
			}
		})
	}
}

// TestFlagsKeyFileReadableByOthers: a key file others can read still
// works, with a warning on the FlagSet's output; a private one gets none.
func TestFlagsKeyFileReadableByOthers(t *testing.T) {
	clearAPIEnv(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o644, true}, {0o640, true}, {0o600, false}, {0o400, false}} {
		keyFile := filepath.Join(dir, "key")
		if err := os.WriteFile(keyFile, []byte(testKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(keyFile, tc.mode); err != nil {
			t.Fatal(err)
		}
		var f client.Flags
		var out strings.Builder
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(&out)
		f.Register(fs)
		if err := fs.Parse([]string{"-api-key-file", keyFile}); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.Config(false)
		if err != nil || cfg.APIKey != testKey {
			t.Fatalf("mode %04o: Config: key %q, %v; want the file's key and no error", tc.mode, cfg.APIKey, err)
		}
		if got := strings.Contains(out.String(), "can be read by other users (mode"); got != tc.warn {
			t.Errorf("mode %04o: warning %v (output %q), want %v", tc.mode, got, out.String(), tc.warn)
		}
		os.Remove(keyFile)
	}
}
