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

	// ErrNotUTF8 means the file is not UTF-8 text: it is UTF-16, or holds
	// bytes that are not UTF-8 (most often Latin-1 or Windows-1252 text),
	// or NUL bytes. Read on, such values would reach the API as U+FFFD.
	ErrNotUTF8 = errors.New("the file is not UTF-8 text")

	// ErrLineEndings means the header holds a bare carriage return, as
	// files whose lines end in CR alone (old Mac, some Excel exports) do:
	// such a file reads as a single row.
	ErrLineEndings = errors.New("line endings are CR only")
)

// saveUTF8 is what an ErrNotUTF8 tells a person to do.
const saveUTF8 = `save it as UTF-8 (in Excel, as "CSV UTF-8")`

// utf16Probe is how many bytes at the start of the input are looked at for
// the NULs that UTF-16 puts beside every ASCII character.
const utf16Probe = 64

// headProbe is how much of the header line is kept to explain a header the
// parser could not read: its separators and line endings.
const headProbe = 4 << 10

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
	// invalid rune. A first line "sep=X", as Excel writes it, overrides
	// it with X for that file. Default ','.
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
	if !canSeparate(c.Comma) {
		return fmt.Errorf("csv config: Comma %q cannot separate fields", c.Comma)
	}
	if c.MaxRecordBytes < 0 {
		return fmt.Errorf("csv config: MaxRecordBytes %d is negative", c.MaxRecordBytes)
	}
	return nil
}

// ParseDelimiter reads a field separator as a person names it: "tab" (or
// "\t", or a tab itself) for a tab, otherwise a single character such as
// "," or ";". It refuses what cannot separate fields: a quote, a line
// break, an empty or longer text.
func ParseDelimiter(s string) (rune, error) {
	if strings.EqualFold(s, "tab") || s == `\t` {
		return '\t', nil
	}
	r, size := utf8.DecodeRuneInString(s)
	switch {
	case s == "":
		return 0, errors.New("empty: use \",\", \";\", \"tab\" or another single character")
	case size != len(s):
		return 0, fmt.Errorf("%q: use \",\", \";\", \"tab\" or another single character", s)
	case !canSeparate(r):
		return 0, fmt.Errorf("%q cannot separate fields (a quote, a line break or not UTF-8)", s)
	}
	return r, nil
}

// canSeparate reports whether the parser takes r as a field separator.
func canSeparate(r rune) bool {
	return r != 0 && r != '"' && r != '\r' && r != '\n' && utf8.ValidRune(r) && r != utf8.RuneError
}

// Record is one data row of the file.
type Record struct {
	// Line is the line the record starts on, counting from 1 at the top of
	// the file (the header's first line, or a "sep=" line above it).
	Line int

	// ID is the id cell with surrounding spaces and tabs removed. It is not
	// validated; see Screen.
	ID string

	// Values are the passthrough cells, unchanged, in the order of
	// CSV.Columns.
	Values []string
	// Null says the id was SQL NULL (a Spool's row); ID is then empty.
	Null bool
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
	header  []string // the header cells, to name a column in an error

	skipped  int // lines before the parser's first: a "sep=" line
	nextLine int // the line after the last row read, where the parser goes on

	err error // the error that ended the read, returned by every later Next
}

// NewCSV reads the header from r and returns a CSV positioned at the first
// record. It fails on an empty input, a file that is not UTF-8 text, a
// header without the id column, or passthrough columns whose names
// collide. The CSV reads r as it goes; the caller closes r when done.
func NewCSV(r io.Reader, cfg CSVConfig) (*CSV, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}

	m := newMeter(r, int64(cfg.MaxRecordBytes))
	buf := bufio.NewReaderSize(m, readBufferSize)
	if head, _ := buf.Peek(utf16Probe); isUTF16(head) {
		return nil, fmt.Errorf("%w: it is UTF-16; %s", ErrNotUTF8, saveUTF8)
	}
	skipBOM(buf)
	comma, skipped, err := sepLine(buf)
	if err != nil {
		return nil, &LineError{Line: 1, Err: err}
	}
	if comma == 0 {
		comma = cfg.Comma
	}

	// The start of the header line, kept in case the parser cannot read
	// it. The input is read until it has these bytes, whatever the chunks
	// it comes in, so that what is said about it does not depend on them.
	head, _ := buf.Peek(headProbe)
	head, _, _ = bytes.Cut(head, []byte("\n"))
	head = bytes.Clone(head)

	cr := csv.NewReader(buf)
	cr.Comma = comma
	cr.FieldsPerRecord = -1 // checked in Next, so that all-empty rows can be skipped
	c := &CSV{meter: m, buf: buf, r: cr, skipped: skipped, nextLine: 1 + skipped}

	header, line, err := c.read()
	if errors.Is(err, io.EOF) {
		return nil, ErrNoHeader
	}
	if err != nil {
		return nil, explainHeader(err, head, comma)
	}
	if err := c.useHeader(header, cfg.IDColumn, comma); err != nil {
		return nil, &LineError{Line: line, Err: err}
	}
	return c, nil
}

// isUTF16 reports whether head, the start of the input, is UTF-16 text: it
// starts with a UTF-16 byte order mark, or has a NUL on the same side of
// every pair of bytes, as UTF-16 has beside each ASCII character. Neither
// ever starts a UTF-8 text file.
func isUTF16(head []byte) bool {
	if bytes.HasPrefix(head, []byte{0xFF, 0xFE}) || bytes.HasPrefix(head, []byte{0xFE, 0xFF}) {
		return true
	}
	n := len(head) &^ 1
	high, low := n > 0, n > 0 // a NUL in the first byte of each pair, in the second
	for i := 0; i < n; i += 2 {
		high = high && head[i] == 0 && head[i+1] != 0
		low = low && head[i] != 0 && head[i+1] == 0
	}
	return high || low
}

// sepLine reads the line "sep=X" that Excel may write above the header to
// name the separator, returning X and 1, the lines skipped. For an input
// without that line it returns 0 and 0, having read nothing.
func sepLine(buf *bufio.Reader) (rune, int, error) {
	const prefix = "sep="
	head, err := buf.Peek(len(prefix) + utf8.UTFMax + len("\r\n"))
	rest, ok := bytes.CutPrefix(head, []byte(prefix))
	if !ok {
		return 0, 0, nil
	}
	sep, size := utf8.DecodeRune(rest)
	if size == 0 {
		return 0, 0, nil
	}

	var eol int
	switch after := rest[size:]; {
	case bytes.HasPrefix(after, []byte("\n")):
		eol = 1
	case bytes.HasPrefix(after, []byte("\r\n")):
		eol = 2
	case len(after) == 0 && err != nil: // the line ends the input
	default:
		return 0, 0, nil // a header cell that happens to start "sep="
	}
	if !canSeparate(sep) {
		return 0, 0, fmt.Errorf("the line %q names a separator that cannot separate fields", head[:len(prefix)+size])
	}
	buf.Discard(len(prefix) + size + eol) // the bytes are buffered, so this cannot fail
	return sep, 1, nil
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
	if err := c.checkText(fields); err != nil {
		c.err = &LineError{Line: line, Err: err}
		return Record{}, c.err
	}

	// The parser gives each record a fresh slice, so the passthrough values
	// can take its place once the id is out.
	id := strings.Trim(fields[c.idIndex], " \t")
	values := append(fields[:c.idIndex], fields[c.idIndex+1:]...)
	return Record{Line: line, ID: id, Values: values}, nil
}

// read returns the next row that is not blank, and the line it starts on.
// Its errors are io.EOF, a *LineError, or a read error from the input.
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
			return nil, 0, readError(err, c.skipped)
		}
		line, _ := c.r.FieldPos(0)
		line += c.skipped
		c.nextLine = line + 1 + lineBreaks(fields)
		if !blank(fields) {
			return fields, line, nil
		}
	}
}

// blank reports whether a row holds no text: every field is empty or
// spaces and tabs ("", ",,,", "  ,  ", a line holding a stray space),
// whatever their count. Such a row names no profile, as a blank line does.
func blank(fields []string) bool {
	return !slices.ContainsFunc(fields, func(f string) bool { return strings.Trim(f, " \t") != "" })
}

// checkText refuses a row with a field that is not UTF-8 text, naming the
// column. The header's columns are named by position, the record's by
// their header cells.
func (c *CSV) checkText(fields []string) error {
	for i, f := range fields {
		if utf8.ValidString(f) && strings.IndexByte(f, 0) < 0 {
			continue
		}
		for j := 0; j < len(f); {
			r, size := utf8.DecodeRuneInString(f[j:])
			switch {
			case r == 0:
				return fmt.Errorf("%w: NUL byte in %s (is the file UTF-16, or not text?); %s",
					ErrNotUTF8, c.column(i), saveUTF8)
			case r == utf8.RuneError && size == 1:
				return fmt.Errorf("%w: byte 0x%02X in %s is not UTF-8 (is the file Latin-1 or Windows-1252?); %s",
					ErrNotUTF8, f[j], c.column(i), saveUTF8)
			}
			j += size
		}
	}
	return nil
}

// column names the column at 0-based position i for a person: by its
// header cell, or by its 1-based position while the header is being read
// or when its cell is empty.
func (c *CSV) column(i int) string {
	if i < len(c.header) {
		if name := headerText(c.header[i]); name != "" {
			return fmt.Sprintf("column %q", name)
		}
	}
	return fmt.Sprintf("column %d", i+1)
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

// readError turns an error from the parser into one of read's, skipped
// being the lines of the file before the parser's first.
func readError(err error, skipped int) error {
	var pe *csv.ParseError
	switch {
	case errors.Is(err, io.EOF):
		return io.EOF
	case errors.As(err, &pe) && pe.Line != pe.StartLine:
		return &LineError{Line: pe.StartLine + skipped,
			Err: fmt.Errorf("%w (line %d, column %d)", pe.Err, pe.Line+skipped, pe.Column)}
	case errors.As(err, &pe):
		return &LineError{Line: pe.StartLine + skipped, Err: fmt.Errorf("%w (column %d)", pe.Err, pe.Column)}
	default:
		return fmt.Errorf("read csv: %w", err)
	}
}

// explainHeader adds to err, the error that kept the parser from reading
// the header, what head, the start of the header line, says of its cause:
// lines that end in CR alone make the whole file one record, too large
// for the parser; a file with other separators may quote its cells in a
// way the parser refuses.
func explainHeader(err error, head []byte, comma rune) error {
	var le *LineError
	if !errors.As(err, &le) {
		return err
	}
	// head ends before the first '\n', so every '\r' in it but a last one
	// (of a CRLF) is a bare one.
	if errors.Is(err, ErrRecordTooLarge) && bytes.ContainsRune(bytes.TrimSuffix(head, []byte("\r")), '\r') {
		return &LineError{Line: le.Line, Err: crOnly(ErrRecordTooLarge)}
	}
	if (errors.Is(err, csv.ErrQuote) || errors.Is(err, csv.ErrBareQuote)) && !bytes.ContainsRune(head, comma) {
		if hint := separatorHint(string(head), comma); hint != "" {
			return &LineError{Line: le.Line, Err: fmt.Errorf("%w; %s", le.Err, hint)}
		}
	}
	return err
}

// crOnly is the error for a header that holds a bare carriage return;
// cause, if not nil, is why the parser could not read that one row.
func crOnly(cause error) error {
	const fix = "save with LF or CRLF line endings"
	if cause != nil {
		return fmt.Errorf("%w, so the file reads as one row (%w); %s", ErrLineEndings, cause, fix)
	}
	return fmt.Errorf("%w, so the file reads as one row; %s", ErrLineEndings, fix)
}

// useHeader checks the header's text, finds the id column in it and names
// the passthrough columns. comma is the separator the file is read with.
func (c *CSV) useHeader(header []string, idColumn string, comma rune) error {
	if err := c.checkText(header); err != nil {
		return err
	}
	// The parser makes each CRLF a '\n' and drops a '\r' that ends the
	// input, so a '\r' left in a cell is a bare one.
	if slices.ContainsFunc(header, func(cell string) bool { return strings.Contains(cell, "\r") }) {
		return crOnly(nil)
	}

	c.header = header
	c.width = len(header)
	c.idIndex = -1
	for i, cell := range header {
		if !strings.EqualFold(headerText(cell), idColumn) {
			continue
		}
		if c.idIndex >= 0 {
			return fmt.Errorf("%w: %q (column %d) and %q (column %d) both name the id column %q",
				ErrDuplicateColumn, header[c.idIndex], c.idIndex+1, cell, i+1, idColumn)
		}
		c.idIndex = i
	}
	if c.idIndex < 0 {
		return missingIDColumn(header, idColumn, comma)
	}

	c.columns = make([]string, 0, len(header)-1)
	cells := make(map[string]int, len(header)-1) // output name -> 0-based position of its header cell
	for i, cell := range header {
		if i == c.idIndex {
			continue
		}
		name := columnName(cell, i)
		if first, ok := cells[name]; ok {
			return fmt.Errorf("%w: %q (column %d) and %q (column %d) both become %q; rename one",
				ErrDuplicateColumn, header[first], first+1, cell, i+1, name)
		}
		cells[name] = i
		c.columns = append(c.columns, name)
	}
	return nil
}

func missingIDColumn(header []string, idColumn string, comma rune) error {
	err := fmt.Errorf("%w %q in header %q", ErrNoIDColumn, idColumn, header)
	if len(header) == 1 {
		if hint := separatorHint(header[0], comma); hint != "" {
			return fmt.Errorf("%w; %s", err, hint)
		}
	}
	if slices.ContainsFunc(header, func(cell string) bool { return uprof.Validate(cell) == nil }) {
		return fmt.Errorf("%w; the first row holds an id, so the file may lack a header row", err)
	}
	return fmt.Errorf("%w; choose the id column by its header name", err)
}

// separators are the field separators spreadsheets export with, to
// recognise in a header read as one cell.
var separators = []struct {
	r    rune
	name string
}{{';', "semicolon"}, {'\t', "tab"}, {',', "comma"}, {'|', "pipe"}}

// separatorHint says what to do about line, the text of a header row, if
// it looks separated by something other than comma, the separator it was
// read with; otherwise it returns "". The separator found most often in
// line is the one named.
func separatorHint(line string, comma rune) string {
	best, most := -1, 0
	for i, s := range separators {
		if s.r == comma {
			continue
		}
		if n := strings.Count(line, string(s.r)); n > most {
			best, most = i, n
		}
	}
	if best < 0 {
		return ""
	}

	s := separators[best]
	sep := fmt.Sprintf("the line %q", "sep="+string(s.r))
	flag := fmt.Sprintf("%q", s.r)
	if s.r == '\t' {
		sep = `a line of "sep=" and a tab`
		flag = "tab"
	}
	return fmt.Sprintf("this looks like a %s-separated file, but fields are read as separated by %q: "+
		"read it with --delimiter %s, put %s above the header, or save the file with %q between fields",
		s.name, comma, flag, sep, comma)
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
