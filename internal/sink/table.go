package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/sqldb"
)

// DefaultTable is the table a Table sink writes when none is named.
const DefaultTable = "enrollq_results"

var tableRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$`)

// ValidateTable checks a table name: letters, digits and '_', optionally
// schema-qualified ("results" or "crm.results").
func ValidateTable(name string) error {
	if !tableRE.MatchString(name) {
		return fmt.Errorf("table name %q: use letters, digits and '_', optionally as schema.table", name)
	}
	return nil
}

// Table writes each result as it is stored into a PostgreSQL or MySQL
// table, one row per (campaign, user_profile_id), so that a fleet of
// workers fills one consolidated table. The table is created if missing.
// A result replaces the row only when it is at least as new (by
// finished_at), and a failure never replaces a URL still valid: a task
// that runs twice leaves one row, and the newest URL wins.
//
// Columns: campaign, user_profile_id, enrollment_url, expires_at, status,
// error_type, error_message, request_id, attempts, passthrough (the
// input's passthrough columns as a JSON object), finished_at.
//
// A Table is safe for concurrent use.
type Table struct {
	db             *sqldb.DB
	name           string
	insert, update string
}

var _ Results = (*Table)(nil)

// OpenTable connects to the database at dbURL and creates table if it is
// missing.
func OpenTable(ctx context.Context, dbURL, table string) (*Table, error) {
	if err := ValidateTable(table); err != nil {
		return nil, err
	}
	db, err := sqldb.Open(ctx, dbURL, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("result table: %w", err)
	}
	t := &Table{db: db, name: table}
	if err := createTable(ctx, db, table); err != nil {
		db.Close()
		return nil, fmt.Errorf("create result table %s on %s: %w", table, db, db.Scrub(err))
	}
	t.insert, t.update = upsertSQL(db.Dialect, table)
	return t, nil
}

// createTable runs CREATE TABLE IF NOT EXISTS. On PostgreSQL two workers
// that start together race inside it (the loser fails on the catalog with
// 23505, 42P07 or 42710), so there the statement runs under a
// transaction-scoped advisory lock named after the table: the second
// creator waits for the first to commit, then finds the table.
func createTable(ctx context.Context, db *sqldb.DB, table string) error {
	create := tableSQL(db.Dialect, table)
	if db.Dialect != sqldb.Postgres {
		_, err := db.ExecContext(ctx, create)
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "enrollq:create:"+table); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, create); err != nil {
		return err
	}
	return tx.Commit()
}

// tableSQL is the table's CREATE statement. On MySQL and MariaDB the key
// columns compare byte for byte (utf8mb4_bin): ids that differ only in
// case are two profiles, not one row. Text columns there are MEDIUMTEXT:
// TEXT stops at 64 KiB, less than a passthrough record may hold (1 MiB).
func tableSQL(d sqldb.Dialect, table string) string {
	text, ts, key := "text", "timestamptz", ""
	if d == sqldb.MySQL {
		text, ts, key = "mediumtext", "datetime(6)", " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
	}
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
  campaign varchar(128)%[4]s NOT NULL,
  user_profile_id varchar(128)%[4]s NOT NULL,
  enrollment_url %[2]s NULL,
  expires_at %[3]s NULL,
  status varchar(16) NOT NULL,
  error_type %[2]s NULL,
  error_message %[2]s NULL,
  request_id varchar(64) NULL,
  attempts bigint NOT NULL,
  passthrough %[2]s NULL,
  finished_at %[3]s NOT NULL,
  PRIMARY KEY (campaign, user_profile_id)
)`, table, text, ts, key)
}

// upsertSQL returns the statements of Put: an insert that does nothing
// when the row exists, and an update that replaces the row only with a
// result at least as new that does not put a failure over a live URL. The
// update's condition reads the old row, atomically, in both dialects.
func upsertSQL(d sqldb.Dialect, table string) (string, string) {
	cols := []string{"campaign", "user_profile_id", "enrollment_url", "expires_at", "status",
		"error_type", "error_message", "request_id", "attempts", "passthrough", "finished_at"}
	ph := func(i int) string {
		if d == sqldb.Postgres {
			return fmt.Sprintf("$%d", i)
		}
		return "?"
	}
	vals := make([]string, len(cols))
	for i := range cols {
		vals[i] = ph(i + 1)
	}
	insert := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", table, strings.Join(cols, ", "), strings.Join(vals, ", "))
	if d == sqldb.Postgres {
		insert += " ON CONFLICT (campaign, user_profile_id) DO NOTHING"
	} else {
		insert += " ON DUPLICATE KEY UPDATE campaign = campaign" // no change: 0 rows affected
	}

	// Update: SET the eight value columns, then WHERE on the key and the
	// old row; the placeholders follow in that order.
	set := make([]string, 0, len(cols)-2)
	n := 0
	for _, c := range cols[2:] {
		n++
		set = append(set, c+" = "+ph(n))
	}
	newStatus := ph(n + 4)
	if d == sqldb.Postgres {
		newStatus += "::text" // a bare parameter beside a literal has no type
	}
	update := fmt.Sprintf("UPDATE %s SET %s WHERE campaign = %s AND user_profile_id = %s"+
		" AND finished_at <= %s"+
		" AND NOT (status = 'created' AND %s <> 'created' AND expires_at > %s)",
		table, strings.Join(set, ", "), ph(n+1), ph(n+2), ph(n+3), newStatus, ph(n+5))
	return insert, update
}

// Put writes r.
func (t *Table) Put(ctx context.Context, r campaign.Result) error {
	passthrough := ""
	if len(r.Columns) > 0 {
		b, err := json.Marshal(r.Columns)
		if err != nil {
			return fmt.Errorf("result table: %s: %w", r.ProfileID, err)
		}
		passthrough = string(b)
	}
	var expires any
	if !r.ExpiresAt.IsZero() {
		expires = r.ExpiresAt.UTC()
	}
	finished := r.FinishedAt.UTC()
	values := []any{nullable(r.URL), expires, string(r.Status), nullable(r.ErrorType),
		nullable(r.ErrorMessage), nullable(r.RequestID), r.Attempts, nullable(passthrough), finished}

	res, err := t.db.ExecContext(ctx, t.insert, append([]any{r.Campaign, r.ProfileID}, values...)...)
	if err != nil {
		return fmt.Errorf("result table: insert %s: %w", r.ProfileID, t.db.Scrub(err))
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		return nil
	}
	args := append(values, r.Campaign, r.ProfileID, finished, string(r.Status), finished)
	if _, err := t.db.ExecContext(ctx, t.update, args...); err != nil {
		return fmt.Errorf("result table: update %s: %w", r.ProfileID, t.db.Scrub(err))
	}
	return nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// String names the table and its database, without the password.
func (t *Table) String() string { return "table " + t.name + " on " + t.db.String() }

// Close closes the connection pool.
func (t *Table) Close() error { return t.db.Close() }

// deliver writes the result an Outbox holds (its JSON). A body that does
// not decode is an error for good, and stays in the outbox for an
// operator; it cannot happen with a body that Outbox.Put wrote.
func (t *Table) deliver(ctx context.Context, body []byte, _ string) error {
	var r campaign.Result
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("result table: decode an outbox entry: %w", err)
	}
	return t.Put(ctx, r)
}
