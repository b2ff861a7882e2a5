// Package sqldb opens the SQL databases enrollq reads profiles from and
// writes results to, from a URL: postgres:// or postgresql:// (PostgreSQL,
// through pgx's database/sql driver) and mysql://user:pass@host:port/db
// (MySQL and MariaDB, through go-sql-driver/mysql, whose own DSN format the
// URL is turned into).
//
// A URL's password is a secret: DB.String and every error this package
// returns show the URL with the password replaced, and errors that a
// driver returns are scrubbed of it too.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// Dialect is the SQL flavour of a database.
type Dialect string

const (
	Postgres Dialect = "postgres"
	MySQL    Dialect = "mysql"
)

// ErrBadURL is a URL that names no supported database.
var ErrBadURL = errors.New("unsupported database url")

// IsURL reports whether s looks like a URL this package opens.
func IsURL(s string) bool {
	_, err := dialectOf(s)
	return err == nil
}

func dialectOf(raw string) (Dialect, error) {
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok {
		return "", fmt.Errorf("%w: want postgres://, postgresql:// or mysql://", ErrBadURL)
	}
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		return Postgres, nil
	case "mysql", "mariadb":
		return MySQL, nil
	}
	return "", fmt.Errorf("%w: scheme %q: want postgres://, postgresql:// or mysql://", ErrBadURL, scheme)
}

// DB is an open database.
type DB struct {
	*sql.DB
	Dialect  Dialect
	redacted string
	secrets  []string // the URL's password, in its user part or its query
}

// String is the URL with its password replaced.
func (db *DB) String() string { return db.redacted }

// Redacted is rawURL as it may be shown, its passwords replaced; "" when
// it does not parse.
func Redacted(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	shown, _ := redact(u)
	return shown
}

// ErrUnreachable marks an Open that failed because the server did not
// answer (refused, unreachable, or too slow), as opposed to one it
// refused (a wrong password, an unknown database).
var ErrUnreachable = errors.New("database unreachable")

// Open opens the database at rawURL and checks that it answers within
// timeout.
func Open(ctx context.Context, rawURL string, timeout time.Duration) (*DB, error) {
	d, err := dialectOf(rawURL)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse quotes the whole URL; name none of it.
		return nil, fmt.Errorf("%w: the url does not parse", ErrBadURL)
	}
	redacted, secrets := redact(u)
	db := &DB{Dialect: d, redacted: redacted, secrets: secrets}

	driver, dsn := "pgx", rawURL
	if d == MySQL {
		driver = "mysql"
		if dsn, err = mysqlDSN(u); err != nil {
			return nil, fmt.Errorf("%s: %w", db, db.Scrub(err))
		}
	}
	if db.DB, err = sql.Open(driver, dsn); err != nil {
		return nil, fmt.Errorf("%s: %w", db, db.Scrub(err))
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		var netErr net.Error
		if errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("connect to %s: %w: %w", db, ErrUnreachable, db.Scrub(err))
		}
		return nil, fmt.Errorf("connect to %s: %w", db, db.Scrub(err))
	}
	return db, nil
}

// mysqlDSN turns mysql://user:pass@host:port/db?param=v into the driver's
// user:pass@tcp(host:port)/db?param=v. Times come back as time.Time in
// UTC unless the URL says otherwise.
func mysqlDSN(u *url.URL) (string, error) {
	cfg := mysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = u.Hostname() + ":3306"
	}
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	dsn := cfg.FormatDSN()
	if u.RawQuery != "" {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		dsn += sep + u.RawQuery
	}
	parsed, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("mysql url: %w", err)
	}
	// One statement a query: with several, a read could carry a write
	// after it past the check that a query starts as a read.
	if parsed.MultiStatements {
		return "", errors.New("mysql url: multiStatements: not allowed (one statement a query)")
	}
	return dsn, nil
}

// redactParams are the query parameters of a database URL that hold a
// secret (pgx reads password and sslpassword there; a MySQL URL's query
// is passed to the driver as DSN parameters).
var redactParams = []string{"password", "sslpassword"}

// redact returns u as it may be shown, its passwords replaced, and the
// passwords.
func redact(u *url.URL) (string, []string) {
	var secrets []string
	if p, ok := u.User.Password(); ok && p != "" {
		secrets = append(secrets, p)
	}
	shown := *u
	if q := u.Query(); len(q) > 0 {
		changed := false
		for _, name := range redactParams {
			for _, v := range q[name] {
				if v != "" {
					secrets = append(secrets, v)
				}
				changed = true
			}
			if _, ok := q[name]; ok {
				q.Set(name, "xxxxx")
			}
		}
		if changed {
			shown.RawQuery = q.Encode()
		}
	}
	return shown.Redacted(), secrets
}

// Scrub returns err with the passwords, wherever a driver put them,
// replaced.
func (db *DB) Scrub(err error) error {
	if err == nil {
		return err
	}
	msg := err.Error()
	for _, p := range db.secrets {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
		// Drivers may quote the URL or the DSN, escaped.
		msg = strings.ReplaceAll(msg, url.QueryEscape(p), "xxxxx")
	}
	if msg == err.Error() {
		return err
	}
	return scrubbed{msg: msg, err: err}
}

// scrubbed keeps the cause for errors.Is while printing a clean message.
type scrubbed struct {
	msg string
	err error
}

func (e scrubbed) Error() string { return e.msg }
func (e scrubbed) Unwrap() error { return e.err }

// BeginReadOnly starts a read-only transaction whose statements the server
// cancels after timeout (PostgreSQL statement_timeout; MariaDB
// max_statement_time, or MySQL max_execution_time for SELECTs). The
// caller should bound ctx by the same timeout, which also covers the time
// spent reading rows.
func (db *DB) BeginReadOnly(ctx context.Context, timeout time.Duration) (*sql.Tx, error) {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("begin read-only transaction on %s: %w", db, db.Scrub(err))
	}
	if timeout <= 0 {
		return tx, nil
	}
	ms := timeout.Milliseconds()
	switch db.Dialect {
	case Postgres:
		_, err = tx.ExecContext(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", ms))
	case MySQL:
		// The session ends with the connection, which Close drops.
		if _, err = tx.ExecContext(ctx, fmt.Sprintf("SET SESSION max_statement_time = %.3f", timeout.Seconds())); err != nil {
			_, err = tx.ExecContext(ctx, fmt.Sprintf("SET SESSION max_execution_time = %d", ms))
		}
	}
	if err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("set statement timeout on %s: %w", db, db.Scrub(err))
	}
	return tx, nil
}
