// Package sqltest gives tests the real PostgreSQL at DATABASE_URL and the
// real MySQL or MariaDB at MYSQL_URL, and unique table names to isolate
// each test on a shared server. A test whose variable is unset is skipped
// with a one-line reason.
package sqltest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/sqldb"
)

// Env names the variable that holds each dialect's test server URL.
var Env = map[sqldb.Dialect]string{
	sqldb.Postgres: "DATABASE_URL",
	sqldb.MySQL:    "MYSQL_URL",
}

// Dialects are the dialects to run a table-driven test over.
var Dialects = []sqldb.Dialect{sqldb.Postgres, sqldb.MySQL}

// URL returns the test server's URL for d, skipping the test when its
// variable is unset.
func URL(t testing.TB, d sqldb.Dialect) string {
	t.Helper()
	url := os.Getenv(Env[d])
	if url == "" {
		t.Skipf("%s is unset: no %s server to test against", Env[d], d)
	}
	return url
}

// Open connects to the test server for d, closed at the end of the test.
func Open(t testing.TB, d sqldb.Dialect) (*sqldb.DB, string) {
	t.Helper()
	url := URL(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sqldb.Open(ctx, url, 10*time.Second)
	if err != nil {
		t.Fatalf("%s is set but: %v", Env[d], err)
	}
	t.Cleanup(func() { db.Close() })
	return db, url
}

var unsafe = regexp.MustCompile(`[^a-z0-9_]+`)

// Table returns a table name unique to this test run, and drops that
// table at the end of the test.
func Table(t testing.TB, db *sqldb.DB) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	n := strings.Trim(unsafe.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(n) > 40 {
		n = n[:40]
	}
	name := "t_" + n + "_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return name
}

// Exec runs statements, failing the test on the first error.
func Exec(t testing.TB, db *sqldb.DB, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := db.ExecContext(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// EachTable runs f as a parallel subtest per dialect, with the dialect's
// test server open (db, and its url) and a table name of its own, dropped
// at the end. A dialect whose server is not configured is skipped.
func EachTable(t *testing.T, f func(t *testing.T, d sqldb.Dialect, db *sqldb.DB, url, table string)) {
	for _, d := range Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, url := Open(t, d)
			f(t, d, db, url, Table(t, db))
		})
	}
}
