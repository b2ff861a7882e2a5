package client

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Flags binds the API settings to a command's flags, the same way in every
// command. The key is never a flag (flags show up in ps and shell
// history): it comes from ANTHROPIC_API_KEY or the file --api-key-file
// names.
type Flags struct {
	cfg      Config
	keyFile  string
	betas    string
	endpoint string
	warnings io.Writer // the FlagSet's output
}

// DefaultCallTimeout is the --timeout default: well under the task
// timeout and the shutdown budget.
const DefaultCallTimeout = 20 * time.Second

// Register adds the API flags to fs. Config's warnings (a key file that
// others can read) go to fs's output, as its usage does.
func (f *Flags) Register(fs *flag.FlagSet) {
	f.warnings = fs.Output()
	fs.StringVar(&f.cfg.BaseURL, "base-url", envOr("ANTHROPIC_BASE_URL", DefaultBaseURL), "API base URL (env ANTHROPIC_BASE_URL)")
	fs.StringVar(&f.keyFile, "api-key-file", "", "read the API key from this file instead of ANTHROPIC_API_KEY")
	fs.StringVar(&f.cfg.Version, "api-version", DefaultVersion, "anthropic-version header")
	fs.StringVar(&f.betas, "beta", DefaultBeta, "anthropic-beta header, comma separated")
	fs.StringVar(&f.cfg.WorkspaceID, "workspace-id", os.Getenv("ANTHROPIC_WORKSPACE_ID"), "anthropic-workspace-id header (env ANTHROPIC_WORKSPACE_ID)")
	fs.DurationVar(&f.cfg.Timeout, "timeout", DefaultCallTimeout, "deadline of one API call")
	fs.StringVar(&f.endpoint, "endpoint", string(EnrollmentURL), "enrollment_url or action_url")
}

// Config returns the parsed settings, with the key loaded unless
// withoutKey (the in-process sandbox needs none).
func (f *Flags) Config(withoutKey bool) (Config, error) {
	c := f.cfg
	c.Endpoint = Endpoint(f.endpoint)
	if c.Endpoint != EnrollmentURL && c.Endpoint != ActionURL {
		return c, fmt.Errorf("--endpoint %q: use %s or %s", f.endpoint, EnrollmentURL, ActionURL)
	}
	if c.Timeout <= 0 {
		return c, fmt.Errorf("--timeout %s: must be positive", c.Timeout)
	}
	for _, b := range strings.Split(f.betas, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Betas = append(c.Betas, b)
		}
	}
	if withoutKey {
		return c, nil
	}
	key, err := loadKey(f.keyFile, f.warnings)
	if err != nil {
		return c, err
	}
	if key == "" {
		return c, fmt.Errorf("no API key: set ANTHROPIC_API_KEY or --api-key-file")
	}
	c.APIKey = key
	return c, nil
}

// loadKey reads the key from the environment, or from path, warning on
// warnings when others may read that file: the key still works, but it is
// no longer only this account's.
func loadKey(path string, warnings io.Writer) (string, error) {
	if path == "" {
		return strings.TrimSpace(os.Getenv("ANTHROPIC_API_KEY")), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--api-key-file: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 && warnings != nil {
		fmt.Fprintf(warnings, "warning: --api-key-file %s can be read by other users (mode %04o): chmod 600 it\n", path, st.Mode().Perm())
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("--api-key-file %s: the file is empty", path)
	}
	return key, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
