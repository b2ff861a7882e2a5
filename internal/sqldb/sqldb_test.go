package sqldb

import (
	"errors"
	"net/url"
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
	db := &DB{password: "hunter2"}
	cause := errors.New("dial user:hunter2@host: refused")
	err := db.Scrub(cause)
	if strings.Contains(err.Error(), "hunter2") || !errors.Is(err, cause) {
		t.Errorf("Scrub: %q (is cause: %v); want the password gone and the cause kept", err, errors.Is(err, cause))
	}
}
