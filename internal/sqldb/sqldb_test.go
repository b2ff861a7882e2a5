package sqldb

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestMySQLDSN(t *testing.T) {
	t.Parallel()
	tests := []struct{ url, want string }{
		{"mysql://root@127.0.0.1:3306/test", "root@tcp(127.0.0.1:3306)/test?parseTime=true"},
		{"mysql://app:p%40ss@db.example:3307/crm?tls=true", "app:p@ss@tcp(db.example:3307)/crm?parseTime=true&tls=true"},
		{"mysql://app@db.example/crm", "app@tcp(db.example:3306)/crm?parseTime=true"},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		got, err := mysqlDSN(u)
		if err != nil || got != tt.want {
			t.Errorf("mysqlDSN(%s) = %q, %v; want %q", tt.url, got, err, tt.want)
		}
	}

	// Several statements a query would let a write follow a read.
	u, _ := url.Parse("mysql://root@127.0.0.1:3306/test?multiStatements=true")
	if _, err := mysqlDSN(u); err == nil || !strings.Contains(err.Error(), "multiStatements") {
		t.Errorf("mysqlDSN with multiStatements=true: err %v, want it refused", err)
	}
}

func TestIsURL(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"postgres://h/db": true, "postgresql://h/db": true, "mysql://h/db": true,
		"sqlite://x": false, "results.csv": false, "https://h/hook": false,
	} {
		if got := IsURL(s); got != want {
			t.Errorf("IsURL(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestScrub(t *testing.T) {
	t.Parallel()
	db := &DB{secrets: []string{"hunter2"}}
	cause := errors.New("dial user:hunter2@host: refused")
	err := db.Scrub(cause)
	if strings.Contains(err.Error(), "hunter2") || !errors.Is(err, cause) {
		t.Errorf("Scrub: %q (is cause: %v); want the password gone and the cause kept", err, errors.Is(err, cause))
	}
}

// TestPasswordInQueryRedacted: a password in the URL's query (pgx reads
// password= and sslpassword= there) is as secret as one in its user part.
func TestPasswordInQueryRedacted(t *testing.T) {
	t.Parallel()
	for raw, secrets := range map[string][]string{
		"postgres://u@h/db?sslmode=disable&password=hunter2q":     {"hunter2q"},
		"postgres://u:pw1@h/db?sslpassword=pw2":                   {"pw1", "pw2"},
		"mysql://root@h:3306/test?password=p%40ss&parseTime=true": {"p@ss"},
		"postgres://u@h/db?sslmode=disable":                       nil,
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		shown, got := redact(u)
		if !slices.Equal(got, secrets) {
			t.Errorf("redact(%s) secrets = %q, want %q", raw, got, secrets)
		}
		for _, s := range secrets {
			if strings.Contains(shown, s) || strings.Contains(shown, url.QueryEscape(s)) {
				t.Errorf("redact(%s) shows %q", raw, shown)
			}
		}
		db := &DB{secrets: got}
		if err := db.Scrub(errors.New("cannot parse " + raw)); secrets != nil && strings.Contains(err.Error(), secrets[0]) {
			t.Errorf("Scrub kept %q: %v", secrets[0], err)
		}
	}
}
