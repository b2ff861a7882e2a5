package source

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/enrollq/enrollq/internal/uprof"
)

// DefaultIDColumn is the header of the id column when CSVConfig.IDColumn is
// empty.
const DefaultIDColumn = "user_profile_id"

// DefaultMaxRecordBytes bounds one record when CSVConfig.MaxRecordBytes is
// zero.
const DefaultMaxRecordBytes = 1 << 20

// readBufferSize is what the reader asks of the input at a time.
const readBufferSize = 64 << 10

// Errors a CSV can return, wrapped with the details; test with errors.Is.
// Faults tied to a place in the file come inside a *LineError.
var (
	// ErrNoHeader means the input holds no row at all to read a header
	// from: it is empty, or blank lines only.
	ErrNoHeader = errors.New("no header row: the input is empty")

	// ErrNoIDColumn means no header cell names the id column.
	ErrNoIDColumn = errors.New("no id column")

	// ErrDuplicateColumn means two header cells name the id column, or two
	// passthrough columns normalise to the same output name.
	ErrDuplicateColumn = errors.New("duplicate column")

	// ErrRecordTooLarge means a record is longer than
	// CSVConfig.MaxRecordBytes, most often because a quote was never closed
	// and the rest of the file reads as one field.
	ErrRecordTooLarge = errors.New("record too large")
)

// ResultColumns are the columns the job writes after the passthrough ones,
// in output order; package sink writes exactly these. A passthrough column
// normalising to one of them is renamed "input_" + name.
var ResultColumns = []string{
	"user_profile_id",
	"enrollment_url",
	"expires_at",
	"status",
	"error_type",
	"error_message",
	"request_id",
	"attempts",
}

var bom = []byte("\uFEFF")

// CSVConfig configures NewCSV. The zero value reads comma-separated files
// with a user_profile_id column.
type CSVConfig struct {
	// IDColumn is the header of the column holding user profile ids,
	// matched ignoring case and surrounding spaces. Default
	// DefaultIDColumn.
	IDColumn string

	// Comma separates fields. It may not be a quote, a line break, or an
	// invalid rune. Default ','.
	Comma rune

	// MaxRecordBytes bounds the CSV text of one record, quotes and line
	// breaks included, and so the memory an unclosed quote or a file
	// without line breaks can take. A longer record is a *LineError
	// wrapping ErrRecordTooLarge. Default DefaultMaxRecordBytes.
	MaxRecordBytes int
}

func (c CSVConfig) withDefaults() CSVConfig {
	c.IDColumn = strings.TrimSpace(c.IDColumn)
	if c.IDColumn == "" {
		c.IDColumn = DefaultIDColumn
	}
	if c.Comma == 0 {
		c.Comma = ','
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	return c
}

func (c CSVConfig) validate() error {
	if c.Comma == '"' || c.Comma == '\r' || c.Comma == '\n' ||
		!utf8.ValidRune(c.Comma) || c.Comma == utf8.RuneError {
		return fmt.Errorf("csv config: Comma %q cannot separate fields", c.Comma)
	}
	if c.MaxRecordBytes < 0 {
		return fmt.Errorf("csv config: MaxRecordBytes %d is negative", c.MaxRecordBytes)
	}
	return nil
}

// Record is one data row of the file.
type Record struct {
	// Line is the line the record starts on, counting from 1 at the top of
	// the file (the header's first line).
	Line int

	// ID is the id cell with surrounding spaces and tabs removed. It is not
	// validated; see Screen.
	ID string

	// Values are the passthrough cells, unchanged, in the order of
	// CSV.Columns.
	Values []string
}

// LineError is a fault in the file's structure, at the record starting on
// Line.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

func (e *LineError) Unwrap() error { return e.Err }

// CSV reads records from a CSV file with a header row. It holds one record
// at a time, so files of any length take the same memory. A CSV is not safe
// for concurrent use.
//
// Next takes no context: it reads only when called, so a caller that is
// cancelled stops calling it. A read blocked on a slow input (a network
// body, a pipe) ends when the caller closes that input.
type CSV struct {
	meter *meter
	buf   *bufio.Reader
	r     *csv.Reader

	width   int // fields in the header, and so in every record
	idIndex int
	columns []string

	nextLine int // the line after the last row read, where the parser goes on

	err error // the error that ended the read, returned by every later Next
}

// NewCSV reads the header from r and returns a CSV positioned at the first
// record. It fails on an empty input, a header without the id column, or
// passthrough columns whose names collide. The CSV reads r as it goes; the
// caller closes r when done.
func NewCSV(r io.Reader, cfg CSVConfig) (*CSV, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}

	m := newMeter(r, int64(cfg.MaxRecordBytes))
	buf := bufio.NewReaderSize(m, readBufferSize)
	skipBOM(buf)
	cr := csv.NewReader(buf)
	cr.Comma = cfg.Comma
	cr.FieldsPerRecord = -1 // checked in Next, so that all-empty rows can be skipped
	c := &CSV{meter: m, buf: buf, r: cr, nextLine: 1}

	header, line, err := c.read()
	if errors.Is(err, io.EOF) {
		return nil, ErrNoHeader
	}
	if err != nil {
		return nil, err
	}
	if err := c.useHeader(header, line, cfg.IDColumn); err != nil {
		return nil, &LineError{Line: line, Err: err}
	}
	return c, nil
}

// skipBOM drops a UTF-8 byte order mark at the start of the input, before
// the CSV parser can take it for part of the first field (and refuse a
// quote after it). A read error is left for the parser to meet: the meter
// returns it again.
func skipBOM(buf *bufio.Reader) {
	if head, _ := buf.Peek(len(bom)); bytes.Equal(head, bom) {
		buf.Discard(len(bom)) // the bytes are buffered, so this cannot fail
	}
}

// Columns returns the passthrough column names, normalised as the package
// documentation describes, in file order. Record.Values line up with them.
func (c *CSV) Columns() []string { return slices.Clone(c.columns) }

// Next returns the next record, or io.EOF after the last one. A fault in
// the file's structure is a *LineError; it ends the read, and Next returns
// the same error from then on.
func (c *CSV) Next() (Record, error) {
	if c.err != nil {
		return Record{}, c.err
	}

	fields, line, err := c.read()
	if err != nil {
		c.err = err
		return Record{}, err
	}
	if len(fields) != c.width {
		err := fmt.Errorf("%w: %d fields, header has %d", csv.ErrFieldCount, len(fields), c.width)
		c.err = &LineError{Line: line, Err: err}
		return Record{}, c.err
	}

	// The parser gives each record a fresh slice, so the passthrough values
	// can take its place once the id is out.
	id := strings.Trim(fields[c.idIndex], " \t")
	values := append(fields[:c.idIndex], fields[c.idIndex+1:]...)
	return Record{Line: line, ID: id, Values: values}, nil
}

// read returns the next row that has a non-empty field, and the line it
// starts on. Its errors are io.EOF, a *LineError, or a read error from the
// input.
func (c *CSV) read() ([]string, int, error) {
	for {
		pending, _ := c.buf.Peek(c.buf.Buffered())
		c.meter.next(pending, c.nextLine)

		fields, err := c.r.Read()

		// The size is checked first, whatever the parser made of the
		// record: when the meter cuts a record short, the parser may
		// report the cut as bad quoting.
		if c.meter.over(c.meter.off - int64(c.buf.Buffered())) {
			err := fmt.Errorf("%w: longer than %d bytes; check for a quote that is never closed",
				ErrRecordTooLarge, c.meter.max)
			return nil, 0, &LineError{Line: c.meter.line, Err: err}
		}
		if err != nil {
			return nil, 0, readError(err)
		}
		line, _ := c.r.FieldPos(0)
		c.nextLine = line + 1 + lineBreaks(fields)
		if slices.ContainsFunc(fields, func(f string) bool { return f != "" }) {
			return fields, line, nil
		}
	}
}

// lineBreaks counts the line breaks inside the fields of a row. The parser
// has made each of them, LF or CRLF in the file, a single '\n', and a field
// can hold one only if it is quoted, so a row spans this many lines more
// than one.
func lineBreaks(fields []string) int {
	n := 0
	for _, f := range fields {
		n += strings.Count(f, "\n")
	}
	return n
}

func readError(err error) error {
	var pe *csv.ParseError
	switch {
	case errors.Is(err, io.EOF):
		return io.EOF
	case errors.As(err, &pe) && pe.Line != pe.StartLine:
		return &LineError{Line: pe.StartLine, Err: fmt.Errorf("%w (line %d, column %d)", pe.Err, pe.Line, pe.Column)}
	case errors.As(err, &pe):
		return &LineError{Line: pe.StartLine, Err: fmt.Errorf("%w (column %d)", pe.Err, pe.Column)}
	default:
		return fmt.Errorf("read csv: %w", err)
	}
}

// useHeader finds the id column in header and names the passthrough
// columns.
func (c *CSV) useHeader(header []string, line int, idColumn string) error {
	c.width = len(header)
	c.idIndex = -1
	for i, cell := range header {
		if !strings.EqualFold(headerText(cell), idColumn) {
			continue
		}
		if c.idIndex >= 0 {
			return fmt.Errorf("%w: %q and %q both name the id column %q",
				ErrDuplicateColumn, header[c.idIndex], cell, idColumn)
		}
		c.idIndex = i
	}
	if c.idIndex < 0 {
		return missingIDColumn(header, idColumn)
	}

	c.columns = make([]string, 0, len(header)-1)
	cells := make(map[string]string, len(header)-1) // output name -> header cell
	for i, cell := range header {
		if i == c.idIndex {
			continue
		}
		name := columnName(cell, i)
		if first, ok := cells[name]; ok {
			return fmt.Errorf("%w: %q and %q both become %q", ErrDuplicateColumn, first, cell, name)
		}
		cells[name] = cell
		c.columns = append(c.columns, name)
	}
	return nil
}

func missingIDColumn(header []string, idColumn string) error {
	err := fmt.Errorf("%w %q in header %q", ErrNoIDColumn, idColumn, header)
	if slices.ContainsFunc(header, func(cell string) bool { return uprof.Validate(cell) == nil }) {
		return fmt.Errorf("%w; the first row holds an id, so the file may lack a header row", err)
	}
	return fmt.Errorf("%w; choose the id column by its header name", err)
}

// headerText is a header cell as a person reads it.
func headerText(cell string) string {
	return strings.TrimSpace(strings.TrimPrefix(cell, string(bom)))
}

// columnName is the output name of the passthrough column with header cell
// at 0-based position i.
func columnName(cell string, i int) string {
	name := normalise(cell)
	if name == "" {
		return fmt.Sprintf("column_%d", i+1)
	}
	if slices.Contains(ResultColumns, name) {
		return "input_" + name
	}
	return name
}

// normalise lowercases s and turns every run of characters other than a-z
// and 0-9 into one "_", dropping it at either end.
func normalise(s string) string {
	var b strings.Builder
	gap := false
	for _, r := range strings.ToLower(s) {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			if gap && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
			gap = false
			continue
		}
		gap = true
	}
	return b.String()
}
