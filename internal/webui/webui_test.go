package webui

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateNamesTheFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "auth")
	bad := filepath.Join(dir, "bad")
	os.WriteFile(good, []byte("admin:s3cret\n"), 0o600)
	os.WriteFile(bad, []byte("no colon\n"), 0o600)
	for _, c := range []struct {
		cfg  Config
		want string // "" for valid
	}{
		{Config{Addr: "127.0.0.1:8080"}, ""},
		{Config{Addr: "localhost:8080"}, ""},
		{Config{Addr: "[::1]:8080"}, ""},
		{Config{Addr: "0.0.0.0:8080", AuthFile: good}, ""},
		{Config{Addr: "0.0.0.0:8080", FlagPrefix: "ui-"}, "--ui-addr 0.0.0.0:8080 is not a loopback address: set --ui-auth-file"},
		{Config{Addr: ":8080"}, "--addr :8080 is not a loopback address: set --auth-file"},
		{Config{Addr: "0.0.0.0:8080", AuthFile: bad, FlagPrefix: "ui-"}, "--ui-auth-file: want one line user:password"},
		{Config{Addr: "0.0.0.0:8080", AuthFile: filepath.Join(dir, "none")}, "--auth-file: open"},
	} {
		err := c.cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v, want valid", c.cfg, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: err = %v, want %q", c.cfg, err, c.want)
		case err != nil && strings.Contains(err.Error(), "s3cret"):
			t.Errorf("%+v: the error shows the password: %v", c.cfg, err)
		}
	}
}
