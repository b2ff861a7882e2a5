package source

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrNullID is the verdict's reason for a row whose id is SQL NULL.
var ErrNullID = errors.New("NULL")

// DefaultQueryTimeout bounds a query, rows read included.
const DefaultQueryTimeout = 10 * time.Minute

// QueryConfig configures SpoolQuery.
type QueryConfig struct {
	// IDColumn names the id column (any case). Default: the first column.
	IDColumn string
}

// Querier runs a query; *sql.Tx is one.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

var _ Querier = (*sql.Tx)(nil)

// RowError is a fault met while reading a query's rows, after Rows rows.
type RowError struct {
	Rows int
	Err  error
}

func (e *RowError) Error() string {
	return fmt.Sprintf("query stopped after %d rows: %v", e.Rows, e.Err)
}

func (e *RowError) Unwrap() error { return e.Err }

// SpoolQuery runs query on q and writes its rows to w in spool format, for
// OpenSpool to read back as records, as often as needed. Rows stream: only
// one is held at a time. It returns the number of rows; an error reading
// them is a *RowError that says how far it got. A query that does not
// start as a read does is refused before it is sent (see CheckQuery).
//
// The id column is cfg.IDColumn, else the first; the others pass through
// under the names a CSV header would give them. Values become text: NULL
// an empty string (but a NULL id is kept as such, for Screen to refuse),
// bytes as they are, times in RFC 3339 (UTC), numbers in their shortest
// form.
func SpoolQuery(ctx context.Context, q Querier, query string, cfg QueryConfig, w io.Writer) (int, error) {
	if err := CheckQuery(query); err != nil {
		return 0, err
	}
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return 0, fmt.Errorf("run query: %w", err)
	}
	defer rows.Close()

	names, err := rows.Columns()
	if err != nil {
		return 0, fmt.Errorf("query columns: %w", err)
	}
	idIndex, columns, err := sqlColumns(names, cfg.IDColumn)
	if err != nil {
		return 0, err
	}

	sw := newSpoolWriter(w)
	if err := sw.write(0, false, columns); err != nil {
		return 0, fmt.Errorf("write spool: %w", err)
	}
	raw := make([]any, len(names))
	for i := range raw {
		raw[i] = new(any)
	}
	values := make([]string, 0, len(names))
	n := 0
	for rows.Next() {
		if err := rows.Scan(raw...); err != nil {
			return n, &RowError{Rows: n, Err: err}
		}
		n++
		values = values[:0]
		id := *raw[idIndex].(*any)
		values = append(values, text(id))
		for i, v := range raw {
			if i != idIndex {
				values = append(values, text(*v.(*any)))
			}
		}
		if err := sw.write(n, id == nil, values); err != nil {
			return n, fmt.Errorf("write spool: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return n, &RowError{Rows: n, Err: err}
	}
	if err := sw.flush(); err != nil {
		return n, fmt.Errorf("write spool: %w", err)
	}
	return n, nil
}

// sqlColumns finds the id column and names the passthrough columns.
func sqlColumns(names []string, idColumn string) (int, []string, error) {
	if len(names) == 0 {
		return 0, nil, errors.New("the query returns no columns")
	}
	idIndex := 0
	if idColumn != "" {
		want := strings.ToLower(strings.TrimSpace(idColumn))
		idIndex = slices.IndexFunc(names, func(n string) bool {
			return strings.ToLower(strings.TrimSpace(n)) == want
		})
		if idIndex < 0 {
			return 0, nil, fmt.Errorf("%w %q among the query's columns %q", ErrNoIDColumn, idColumn, names)
		}
	}
	columns := make([]string, 0, len(names)-1)
	seen := make(map[string]string, len(names))
	for i, n := range names {
		if i == idIndex {
			continue
		}
		name := columnName(n, i)
		if prev, ok := seen[name]; ok {
			return 0, nil, fmt.Errorf("%w: query columns %q and %q are both %q", ErrDuplicateColumn, prev, n, name)
		}
		seen[name] = n
		columns = append(columns, name)
	}
	return idIndex, columns, nil
}

// text renders a value that database/sql scanned into an any.
func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []byte:
		// Text columns arrive as bytes from some drivers; binary ones
		// (bytea, blob) are written as PostgreSQL prints them, \x and
		// hex, so that no NUL or broken UTF-8 reaches a UTF-8 CSV.
		if utf8.Valid(v) && !bytes.ContainsRune(v, 0) {
			return string(v)
		}
		return `\x` + hex.EncodeToString(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(v), 'f', -1, 32)
	case bool:
		return strconv.FormatBool(v)
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprint(v)
}

// The spool holds one record after another: the row number (uvarint), a
// flag byte (1: the id is NULL), the field count (uvarint), then each field
// as its length (uvarint) and bytes. The first record, row 0, holds the
// passthrough column names.
type spoolWriter struct {
	bw  *bufio.Writer
	buf []byte
}

func newSpoolWriter(w io.Writer) *spoolWriter {
	return &spoolWriter{bw: bufio.NewWriterSize(w, 1<<16)}
}

func (s *spoolWriter) write(row int, nullID bool, fields []string) error {
	b := binary.AppendUvarint(s.buf[:0], uint64(row))
	flag := byte(0)
	if nullID {
		flag = 1
	}
	b = append(b, flag)
	b = binary.AppendUvarint(b, uint64(len(fields)))
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	s.buf = b
	_, err := s.bw.Write(b)
	return err
}

func (s *spoolWriter) flush() error { return s.bw.Flush() }

// Spool reads back what SpoolQuery wrote. Record.Line is the row number,
// counting from 1 at the query's first row. It is not safe for concurrent
// use.
type Spool struct {
	br      *bufio.Reader
	columns []string
}

// OpenSpool starts reading a spool.
func OpenSpool(r io.Reader) (*Spool, error) {
	s := &Spool{br: bufio.NewReaderSize(r, 1<<16)}
	_, _, cols, err := s.read()
	if err != nil {
		return nil, fmt.Errorf("read spool header: %w", err)
	}
	s.columns = cols
	return s, nil
}

// Columns are the passthrough column names, in the order of Record.Values.
func (s *Spool) Columns() []string { return slices.Clone(s.columns) }

// Next returns the next row, or io.EOF after the last.
func (s *Spool) Next() (Record, error) {
	row, null, fields, err := s.read()
	if err != nil {
		return Record{}, err
	}
	if len(fields) != len(s.columns)+1 {
		return Record{}, fmt.Errorf("spool row %d: %d fields, want %d", row, len(fields), len(s.columns)+1)
	}
	return Record{Line: row, ID: strings.Trim(fields[0], " \t"), Values: fields[1:], Null: null}, nil
}

func (s *Spool) read() (int, bool, []string, error) {
	row, err := binary.ReadUvarint(s.br)
	if err != nil {
		return 0, false, nil, err // io.EOF at a record boundary
	}
	flag, err := s.br.ReadByte()
	if err != nil {
		return 0, false, nil, io.ErrUnexpectedEOF
	}
	n, err := binary.ReadUvarint(s.br)
	if err != nil || n > math.MaxInt32 {
		return 0, false, nil, io.ErrUnexpectedEOF
	}
	fields := make([]string, n)
	var b []byte
	for i := range fields {
		l, err := binary.ReadUvarint(s.br)
		if err != nil || l > math.MaxInt32 {
			return 0, false, nil, io.ErrUnexpectedEOF
		}
		b = slices.Grow(b[:0], int(l))[:l]
		if _, err := io.ReadFull(s.br, b); err != nil {
			return 0, false, nil, io.ErrUnexpectedEOF
		}
		fields[i] = string(b)
	}
	return int(row), flag == 1, fields, nil
}

// queryStarts are the words a query may start with: those of statements
// that only read (SELECT, a WITH ... SELECT, TABLE t, VALUES ...).
var queryStarts = []string{"SELECT", "WITH", "TABLE", "VALUES"}

// CheckQuery refuses a query that does not start as a read does. The
// read-only transaction refuses writes on both servers, but on MySQL and
// MariaDB a DDL statement (DROP, CREATE, ALTER, TRUNCATE, RENAME) commits
// the transaction and runs: it must never reach the server. A WITH that
// writes (PostgreSQL's data-modifying CTEs) is left to the read-only
// transaction, which refuses it.
//
// A SELECT ... INTO is refused too, wherever its INTO stands: on MySQL and
// MariaDB, INTO OUTFILE and INTO DUMPFILE write a file on the database
// server, which no read-only transaction stops, and INTO a variable or
// (on PostgreSQL) a new table returns no rows to read.
func CheckQuery(query string) error {
	word := firstWord(query)
	if word == "" {
		return errors.New("the query is empty")
	}
	if !slices.ContainsFunc(queryStarts, func(w string) bool { return strings.EqualFold(word, w) }) {
		return fmt.Errorf("the query starts with %s: give a SELECT (or WITH ... SELECT, TABLE, VALUES); nothing else is sent", strings.ToUpper(word))
	}
	if hasKeyword(query, "INTO") {
		return errors.New("the query has an INTO (a file, a table or variables written on the server): give a SELECT that returns its rows; nothing was sent")
	}
	return nil
}

// hasKeyword reports whether the word kw stands in query outside string
// literals, quoted identifiers and comments, in any case. It knows the
// quoting of MySQL and PostgreSQL: '...' with doubled quotes or a
// backslash, "...", `...`, $tag$...$tag$, -- and # to the end of the
// line, /* ... */.
func hasKeyword(query, kw string) bool {
	q := query
	for len(q) > 0 {
		c := q[0]
		switch {
		case c == '\'' || c == '"' || c == '`':
			q = skipQuoted(q[1:], c)
		case strings.HasPrefix(q, "--") || c == '#':
			_, rest, _ := strings.Cut(q, "\n")
			q = rest
		case strings.HasPrefix(q, "/*!") || strings.HasPrefix(q, "/*M!"):
			// MySQL and MariaDB run an executable comment's text: it is
			// read as query text.
			q = strings.TrimPrefix(strings.TrimPrefix(q, "/*!"), "/*M!")
		case strings.HasPrefix(q, "/*"):
			_, rest, _ := strings.Cut(q[2:], "*/")
			q = rest
		case c == '$':
			q = skipDollarQuoted(q)
		case isWordByte(c):
			end := 1
			for end < len(q) && (isWordByte(q[end]) || q[end] >= '0' && q[end] <= '9' || q[end] == '$') {
				end++
			}
			if strings.EqualFold(q[:end], kw) {
				return true
			}
			q = q[end:]
		default:
			q = q[1:]
		}
	}
	return false
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

// skipQuoted returns what follows the literal that q continues, which
// quote opened: a doubled quote or a backslash escapes the next byte.
func skipQuoted(q string, quote byte) string {
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case '\\':
			i++
		case quote:
			if i+1 < len(q) && q[i+1] == quote {
				i++
				continue
			}
			return q[i+1:]
		}
	}
	return ""
}

// skipDollarQuoted returns what follows a PostgreSQL $tag$...$tag$ string
// that q starts with, or q less its '$' when it starts none ($1, say).
func skipDollarQuoted(q string) string {
	end := strings.IndexByte(q[1:], '$')
	if end < 0 {
		return q[1:]
	}
	tag := q[:end+2]
	for _, c := range []byte(tag[1 : len(tag)-1]) {
		if !isWordByte(c) && !(c >= '0' && c <= '9') {
			return q[1:]
		}
	}
	_, rest, _ := strings.Cut(q[len(tag):], tag)
	return rest
}

// firstWord is the query's first word, past blanks, comments and opening
// parentheses.
func firstWord(q string) string {
	for {
		q = strings.TrimLeft(q, " \t\r\n\f(")
		switch {
		case strings.HasPrefix(q, "--"), strings.HasPrefix(q, "#"):
			_, rest, ok := strings.Cut(q, "\n")
			if !ok {
				return ""
			}
			q = rest
		case strings.HasPrefix(q, "/*"):
			_, rest, ok := strings.Cut(q[2:], "*/")
			if !ok {
				return ""
			}
			q = rest
		default:
			end := strings.IndexFunc(q, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
			})
			if end < 0 {
				return q
			}
			return q[:end]
		}
	}
}
