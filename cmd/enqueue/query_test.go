package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enrollq/enrollq/internal/sqldb"
	"github.com/enrollq/enrollq/internal/sqltest"
)

// profileTable fills a fresh table with n profiles, then one with a NULL
// email (row n+1) and one with a NULL id (row n+2).
func profileTable(t *testing.T, d sqldb.Dialect, n int) (string, string) {
	t.Helper()
	db, url := sqltest.Open(t, d)
	table := sqltest.Table(t, db)
	ts, blob := "timestamptz", "bytea"
	if d == sqldb.MySQL {
		ts, blob = "datetime(3)", "blob"
	}
	sqltest.Exec(t, db, fmt.Sprintf(
		"CREATE TABLE %s (seq int PRIMARY KEY, id varchar(64) NULL, email varchar(100) NULL, note %s NULL, signed_up %s NULL)",
		table, blob, ts))

	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			sqltest.Exec(t, db, "INSERT INTO "+table+" VALUES "+b.String())
			b.Reset()
		}
	}
	for i := 1; i <= n; i++ {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "(%d, 'uprof_%024d', 'u%d@example.com', 'note %d', '2026-01-02 03:04:05.5')", i, i, i, i)
		if i%500 == 0 {
			flush()
		}
	}
	flush()
	sqltest.Exec(t, db,
		fmt.Sprintf("INSERT INTO %s VALUES (%d, 'uprof_nullemail', NULL, NULL, NULL)", table, n+1),
		fmt.Sprintf("INSERT INTO %s VALUES (%d, NULL, 'nullid@example.com', 'x', NULL)", table, n+2))
	return url, table
}

func TestQuerySource(t *testing.T) {
	for _, d := range sqltest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			const n = 300
			dbURL, table := profileTable(t, d, n)
			out := filepath.Join(t.TempDir(), "out.csv")

			res := runCmd(t, "--local", "--db-url", dbURL,
				"--query", "SELECT id, email, note, signed_up FROM "+table+" ORDER BY seq",
				"--sandbox", "--rate", "0", "--workers", "20", "--out", out)
			if res.err != nil {
				t.Fatalf("run: %v\n%s%s", res.err, res.out, res.errOut)
			}
			if want := fmt.Sprintf("row %d: invalid id: NULL", n+2); !strings.Contains(res.out, want) {
				t.Errorf("output lacks %q:\n%s", want, res.out)
			}

			rows := readCSV(t, out)
			if len(rows) != n+1 {
				t.Fatalf("got %d rows, want %d", len(rows), n+1)
			}
			for i, r := range rows {
				if r["status"] != "created" {
					t.Errorf("row %d: status %q, want created", i+1, r["status"])
				}
				for k, v := range r {
					if v == "<nil>" || v == "NULL" {
						t.Errorf("row %d: %s = %q", i+1, k, v)
					}
				}
			}
			first := rows[0]
			if first["user_profile_id"] != "uprof_000000000000000000000001" || first["email"] != "u1@example.com" ||
				first["note"] != "note 1" || first["signed_up"] != "2026-01-02T03:04:05.5Z" {
				t.Errorf("first row: got %v", first)
			}
			last := rows[n]
			if last["user_profile_id"] != "uprof_nullemail" || last["email"] != "" || last["note"] != "" || last["signed_up"] != "" {
				t.Errorf("NULL email row: got %v, want empty passthrough values", last)
			}
		})
	}
}

func TestQueryIDColumn(t *testing.T) {
	for _, d := range sqltest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			dbURL, table := profileTable(t, d, 3)
			out := filepath.Join(t.TempDir(), "out.jsonl")
			res := runCmd(t, "--local", "--db-url", dbURL, "--id-column", "ID",
				"--query", "SELECT email, id FROM "+table+" WHERE seq <= 3 ORDER BY seq",
				"--sandbox", "--out", out)
			if res.err != nil {
				t.Fatalf("run: %v\n%s%s", res.err, res.out, res.errOut)
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Count(string(data), `"email":"u`); got != 3 {
				t.Errorf("got %d rows with an email, want 3:\n%s", got, data)
			}
		})
	}
}

func TestQueryFailsMidStream(t *testing.T) {
	dbURL := sqltest.URL(t, sqldb.Postgres)
	out := filepath.Join(t.TempDir(), "out.csv")
	res := runCmd(t, "--local", "--db-url", dbURL, "--sandbox", "--out", out, "--query",
		"SELECT CASE WHEN g <= 2000 THEN 'uprof_' || g ELSE (1 / (g - g))::text END FROM generate_series(1, 5000) g")
	if res.err == nil {
		t.Fatalf("run succeeded on a query that fails at row 2001:\n%s", res.out)
	}
	if !strings.Contains(res.err.Error(), "query stopped after 2000 rows") || !strings.Contains(res.err.Error(), "nothing was enqueued") {
		t.Errorf("error %q: want the row count reached and that nothing was enqueued", res.err)
	}
	if strings.Contains(res.out, "wrote") || strings.Contains(res.out, "enqueued  ") {
		t.Errorf("a failed query reported progress:\n%s", res.out)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("--out exists after a failed query: %v", err)
	}
}

func TestQueryTimeout(t *testing.T) {
	queries := map[sqldb.Dialect]string{
		sqldb.Postgres: "SELECT 'uprof_a' || pg_sleep(5)::text",
		sqldb.MySQL:    "SELECT CONCAT('uprof_a', SLEEP(5))",
	}
	for _, d := range sqltest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			dbURL := sqltest.URL(t, d)
			res := runCmd(t, "--local", "--db-url", dbURL, "--query", queries[d], "--query-timeout", "500ms",
				"--sandbox", "--out", filepath.Join(t.TempDir(), "out.csv"))
			if res.err == nil || !strings.Contains(res.err.Error(), "--query on") {
				t.Fatalf("got error %v, want the query to time out\n%s", res.err, res.out)
			}
		})
	}
}

func TestQueryPasswordNotShown(t *testing.T) {
	for _, d := range sqltest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			u, err := url.Parse(sqltest.URL(t, d))
			if err != nil {
				t.Fatal(err)
			}
			u.User = url.UserPassword(u.User.Username(), "s3cr3t-pw")
			res := runCmd(t, "--local", "--db-url", u.String(), "--query", "SELECT 1", "--sandbox",
				"--out", filepath.Join(t.TempDir(), "out.csv"))
			all := fmt.Sprint(res.err) + res.out + res.errOut
			if strings.Contains(all, "s3cr3t-pw") {
				t.Errorf("the password shows:\n%s", all)
			}
		})
	}
}

func TestQueryIsReadOnly(t *testing.T) {
	t.Parallel()
	db, dbURL := sqltest.Open(t, sqldb.Postgres)
	table := sqltest.Table(t, db)
	sqltest.Exec(t, db, "CREATE TABLE "+table+" (id text)")
	sqltest.Exec(t, db, "INSERT INTO "+table+" VALUES ('uprof_w')")
	res := runCmd(t, "--local", "--db-url", dbURL, "--sandbox", "--out", filepath.Join(t.TempDir(), "out.csv"),
		"--query", "WITH w AS (DELETE FROM "+table+" RETURNING id) SELECT id FROM w")
	if res.err == nil || !strings.Contains(res.err.Error(), "read-only") {
		t.Errorf("a writing query: error %v, want the read-only transaction to refuse it", res.err)
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil || n != 1 {
		t.Errorf("table rows = %d (%v), want 1", n, err)
	}
}

// TestQueryDDLNeverSent: MySQL and MariaDB run DDL in a read-only
// transaction (it commits the transaction first), so a --query that is
// not a read is refused before anything is sent, on both servers.
func TestQueryDDLNeverSent(t *testing.T) {
	sqltest.EachTable(t, func(t *testing.T, d sqldb.Dialect, db *sqldb.DB, dbURL, table string) {
		sqltest.Exec(t, db, "CREATE TABLE "+table+" (id varchar(64))")
		for _, q := range []string{
			"DROP TABLE " + table,
			"  /* tidy up */ drop table " + table,
			"-- note\nTRUNCATE TABLE " + table,
			"(ALTER TABLE " + table + " ADD COLUMN x int)",
		} {
			res := runCmd(t, "--local", "--db-url", dbURL, "--sandbox", "--out", filepath.Join(t.TempDir(), "out.csv"),
				"--query", q)
			var u usageError
			if !errors.As(res.err, &u) || !strings.Contains(res.err.Error(), "--query: the query starts with") {
				t.Errorf("--query %q: error %v, want a usage error naming --query", q, res.err)
			}
		}
		var n int
		if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
			t.Errorf("the table after the refused queries: %v (want it there, empty)", err)
		}
	})
}

// TestQueryIntoNeverSent: MySQL and MariaDB write a SELECT ... INTO
// OUTFILE's file on the server whatever the transaction, so a --query
// with an INTO is refused before anything is sent, on both servers.
func TestQueryIntoNeverSent(t *testing.T) {
	sqltest.EachTable(t, func(t *testing.T, d sqldb.Dialect, db *sqldb.DB, dbURL, table string) {
		sqltest.Exec(t, db, "CREATE TABLE "+table+" (user_profile_id varchar(64))")
		sqltest.Exec(t, db, "INSERT INTO "+table+" VALUES ('uprof_i1')")
		file := filepath.Join(os.TempDir(), table+".out")
		t.Cleanup(func() { os.Remove(file) })
		for _, q := range []string{
			"SELECT user_profile_id FROM " + table + " INTO OUTFILE '" + file + "'",
			"select user_profile_id from " + table + " into dumpfile '" + file + "'",
			"SELECT user_profile_id INTO " + table + "_copy FROM " + table,
		} {
			res := runCmd(t, "--local", "--db-url", dbURL, "--sandbox", "--out", filepath.Join(t.TempDir(), "out.csv"),
				"--query", q)
			var u usageError
			if !errors.As(res.err, &u) || !strings.Contains(res.err.Error(), "--query: the query has an INTO") {
				t.Errorf("--query %q: error %v, want a usage error naming --query and its INTO", q, res.err)
			}
		}
		if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists (%v): the query was sent", file, err)
		}
	})
}

// TestQueryPasswordInQueryStringNotShown: a password given as the URL's
// password parameter is a secret too.
func TestQueryPasswordInQueryStringNotShown(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(sqltest.URL(t, sqldb.Postgres))
	if err != nil {
		t.Fatal(err)
	}
	u.Host = "127.0.0.1:1" // nothing listens: the error names the URL
	q := u.Query()
	q.Set("password", "s3cr3t-qs")
	u.RawQuery = q.Encode()
	res := runCmd(t, "--local", "--db-url", u.String(), "--query", "SELECT 1", "--sandbox",
		"--out", filepath.Join(t.TempDir(), "out.csv"))
	all := fmt.Sprint(res.err) + res.out + res.errOut
	if res.err == nil || strings.Contains(all, "s3cr3t-qs") {
		t.Errorf("error %v; the password must not show:\n%s", res.err, all)
	}
}
