package source

import (
	"encoding/csv"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// result is everything a CSV gave for one input: the columns, the records
// before the first error, and that error (nil at a clean end of file).
type result struct {
	columns []string
	records []Record
	err     error
}

func readAll(t *testing.T, r io.Reader, cfg CSVConfig) result {
	t.Helper()
	c, err := NewCSV(r, cfg)
	if err != nil {
		return result{err: err}
	}

	res := result{columns: c.Columns()}
	for {
		rec, err := c.Next()
		if errors.Is(err, io.EOF) {
			return res
		}
		if err != nil {
			res.err = err
			if again, _ := c.Next(); !reflect.DeepEqual(again, Record{}) {
				t.Errorf("Next after %v returned record %+v, want none", err, again)
			}
			if _, again := c.Next(); again != err {
				t.Errorf("Next after %v returned %v, want the same error", err, again)
			}
			return res
		}
		res.records = append(res.records, rec)
	}
}

func rec(line int, id string, values ...string) Record {
	if values == nil {
		values = []string{}
	}
	return Record{Line: line, ID: id, Values: values}
}

func TestCSV(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		input   string
		cfg     CSVConfig
		columns []string
		records []Record
	}{
		{
			name:    "header only",
			input:   "user_profile_id,email\n",
			columns: []string{"email"},
		},
		{
			name:    "header only without line break",
			input:   "user_profile_id,email",
			columns: []string{"email"},
		},
		{
			name:    "id column only",
			input:   "user_profile_id\nuprof_a\n",
			columns: []string{},
			records: []Record{rec(2, "uprof_a")},
		},
		{
			name:    "BOM, mixed case and spaces in the header",
			input:   "\uFEFF  USER_Profile_Id ,E-Mail  Address\r\nuprof_a,a@example.com\r\n",
			columns: []string{"e_mail_address"},
			records: []Record{rec(2, "uprof_a", "a@example.com")},
		},
		{
			name:    "BOM before a quoted header",
			input:   "\uFEFF\"user_profile_id\",\"Notes\"\nuprof_a,x\n",
			columns: []string{"notes"},
			records: []Record{rec(2, "uprof_a", "x")},
		},
		{
			name:    "other id column",
			input:   "id,Profile,x\n1,uprof_a,y\n",
			cfg:     CSVConfig{IDColumn: " profile "},
			columns: []string{"id", "x"},
			records: []Record{rec(2, "uprof_a", "1", "y")},
		},
		{
			name:    "reserved names are renamed",
			input:   "user_profile_id,Status,Request ID,email,Attempts\nuprof_a,s,r,e,n\n",
			columns: []string{"input_status", "input_request_id", "email", "input_attempts"},
			records: []Record{rec(2, "uprof_a", "s", "r", "e", "n")},
		},
		{
			name:    "passthrough named like the id column is renamed",
			input:   "profile,User Profile ID\nuprof_a,x\n",
			cfg:     CSVConfig{IDColumn: "profile"},
			columns: []string{"input_user_profile_id"},
			records: []Record{rec(2, "uprof_a", "x")},
		},
		{
			name:    "names normalised, empty ones numbered",
			input:   "user_profile_id,,  ,__Ünïcode__ Name!!,first__name,2nd\nuprof_a,1,2,3,4,5\n",
			columns: []string{"column_2", "column_3", "n_code_name", "first_name", "2nd"},
			records: []Record{rec(2, "uprof_a", "1", "2", "3", "4", "5")},
		},
		{
			name: "blank and all-empty rows are skipped",
			input: "\n\r\nuser_profile_id,a,b\n\n,,\r\n,\n" +
				"uprof_a,1,2\n\r\n\n,,\nuprof_b,3,4\n,,,,\n\n",
			columns: []string{"a", "b"},
			records: []Record{rec(7, "uprof_a", "1", "2"), rec(11, "uprof_b", "3", "4")},
		},
		{
			name:    "lines of spaces and tabs are blank",
			input:   " \nuser_profile_id,a\n \n\t \r\nuprof_a,1\n  \n",
			columns: []string{"a"},
			records: []Record{rec(5, "uprof_a", "1")},
		},
		{
			name:    "a line of spaces is blank in a one-column file too",
			input:   "user_profile_id\n  \nuprof_a\n\t\n",
			columns: []string{},
			records: []Record{rec(3, "uprof_a")},
		},
		{
			name:    "a row of separators, spaces and tabs is blank, whatever its field count",
			input:   "user_profile_id,a\n , \nuprof_a,x\n\t,  ,\n",
			columns: []string{"a"},
			records: []Record{rec(3, "uprof_a", "x")},
		},
		{
			name:    "UTF-8 text, U+FFFD included, passes",
			input:   "user_profile_id,Prénom\nuprof_a,Björk \uFFFD 日本\n",
			columns: []string{"pr_nom"},
			records: []Record{rec(2, "uprof_a", "Björk \uFFFD 日本")},
		},
		{
			name:    "sep line names the separator and counts as a line",
			input:   "sep=;\nuser_profile_id;email\n\nuprof_a;\"a;b\"\n",
			columns: []string{"email"},
			records: []Record{rec(4, "uprof_a", "a;b")},
		},
		{
			name:    "sep line after a BOM, with CRLF, overriding Comma",
			input:   "\uFEFFsep=\t\r\nuser_profile_id\tnote\r\nuprof_a\t\"x\r\ny\"\r\nuprof_b\t,\r\n",
			cfg:     CSVConfig{Comma: ';'},
			columns: []string{"note"},
			records: []Record{rec(3, "uprof_a", "x\ny"), rec(5, "uprof_b", ",")},
		},
		{
			name:    "a header cell starting sep= is not a sep line",
			input:   "sep=;,user_profile_id\nx,uprof_a\n",
			columns: []string{"sep"},
			records: []Record{rec(2, "uprof_a", "x")},
		},
		{
			name:    "id trimmed of spaces and tabs, values untouched",
			input:   "user_profile_id,note\n \t uprof_a\t , padded \n\" uprof_b \",\"\"\n",
			columns: []string{"note"},
			records: []Record{rec(2, "uprof_a", " padded "), rec(3, "uprof_b", "")},
		},
		{
			name: "quotes, separators and line breaks inside values",
			input: "note,user_profile_id,other\r\n" +
				"\"a, b\",uprof_a,\"say \"\"hi\"\"\"\r\n" +
				"\"one\r\ntwo\n\nthree\",uprof_b,x\r\n" +
				"last,uprof_c,\"\"\r\n",
			columns: []string{"note", "other"},
			records: []Record{
				rec(2, "uprof_a", "a, b", `say "hi"`),
				rec(3, "uprof_b", "one\ntwo\n\nthree", "x"),
				rec(7, "uprof_c", "last", ""),
			},
		},
		{
			name:    "other separator",
			input:   "user_profile_id;email;note\nuprof_a;a@example.com;\"x;y\"\n",
			cfg:     CSVConfig{Comma: ';'},
			columns: []string{"email", "note"},
			records: []Record{rec(2, "uprof_a", "a@example.com", "x;y")},
		},
		{
			name:    "record of exactly the byte limit",
			input:   "user_profile_id,n\nuprof_a," + strings.Repeat("x", 23) + "\n",
			cfg:     CSVConfig{MaxRecordBytes: 32},
			columns: []string{"n"},
			records: []Record{rec(2, "uprof_a", strings.Repeat("x", 23))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, r := range []io.Reader{
				strings.NewReader(tt.input),
				iotest.OneByteReader(strings.NewReader(tt.input)),
			} {
				got := readAll(t, r, tt.cfg)
				if got.err != nil {
					t.Fatalf("got error %v, want none", got.err)
				}
				if !slices.Equal(got.columns, tt.columns) {
					t.Errorf("got columns %q, want %q", got.columns, tt.columns)
				}
				if !reflect.DeepEqual(got.records, tt.records) {
					t.Errorf("got records\n%#v\nwant\n%#v", got.records, tt.records)
				}
			}
		})
	}
}

func TestCSVErrors(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 100)
	tests := []struct {
		name    string
		input   string
		cfg     CSVConfig
		records int      // records read before the error
		line    int      // the *LineError's line; 0 for an error without one
		is      error    // what the error wraps, if anything
		msg     []string // what its message says
		text    string   // the whole message, if given
	}{
		{
			name:  "empty file",
			input: "",
			is:    ErrNoHeader,
		},
		{
			name:  "blank lines only",
			input: "\r\n\n,,\n",
			is:    ErrNoHeader,
		},
		{
			name:  "missing id column",
			input: "Email,Name\na@example.com,A\n",
			line:  1,
			is:    ErrNoIDColumn,
			msg:   []string{`"user_profile_id"`, `["Email" "Name"]`},
		},
		{
			name:  "missing id column, other name sought",
			input: "user_profile_id,x\n",
			cfg:   CSVConfig{IDColumn: "profile"},
			line:  1,
			is:    ErrNoIDColumn,
			msg:   []string{`"profile"`, `["user_profile_id" "x"]`},
		},
		{
			name:  "missing header row",
			input: "\n\nuprof_a,a@example.com\n",
			line:  3,
			is:    ErrNoIDColumn,
			msg:   []string{"may lack a header row"},
		},
		{
			name:  "duplicate normalised headers",
			input: "user_profile_id,First Name,first_name\n",
			line:  1,
			is:    ErrDuplicateColumn,
			text:  `line 1: duplicate column: "First Name" (column 2) and "first_name" (column 3) both become "first_name"; rename one`,
		},
		{
			name:  "renamed reserved header collides",
			input: "user_profile_id,input_status,Status\n",
			line:  1,
			is:    ErrDuplicateColumn,
			text:  `line 1: duplicate column: "input_status" (column 2) and "Status" (column 3) both become "input_status"; rename one`,
		},
		{
			name:  "two id columns",
			input: "user_profile_id,x,User_Profile_ID \n",
			line:  1,
			is:    ErrDuplicateColumn,
			text:  `line 1: duplicate column: "user_profile_id" (column 1) and "User_Profile_ID " (column 3) both name the id column "user_profile_id"`,
		},
		{
			name:  "bad header quoting",
			input: "user_profile_id,\"x\"y\n",
			line:  1,
			is:    csv.ErrQuote,
		},
		{
			name:    "bare quote",
			input:   "user_profile_id,note\nuprof_a,ok\nuprof_b,say \"hi\"\n",
			records: 1,
			line:    3,
			is:      csv.ErrBareQuote,
			msg:     []string{"column 13"},
		},
		{
			name:    "text after a closing quote, in a multi-line record",
			input:   "user_profile_id,note\nuprof_a,\"one\ntwo\" three\n",
			line:    2,
			is:      csv.ErrQuote,
			msg:     []string{"line 3, column 4"},
			records: 0,
		},
		{
			name:    "quote never closed",
			input:   "user_profile_id,note\r\nuprof_a,x\r\nuprof_b,\"open\r\nuprof_c,y\r\n",
			records: 1,
			line:    3,
			is:      csv.ErrQuote,
		},
		{
			name:    "too few fields",
			input:   "user_profile_id,a,b\nuprof_a,1,2\nuprof_b,\"1\n\",2\nuprof_c,1\n",
			records: 2,
			line:    5,
			is:      csv.ErrFieldCount,
			msg:     []string{"2 fields, header has 3"},
		},
		{
			name:  "too many fields",
			input: "user_profile_id,a\n\n\nuprof_a,1,2\n",
			line:  4,
			is:    csv.ErrFieldCount,
			msg:   []string{"3 fields, header has 2"},
		},
		{
			name:    "record over the byte limit",
			input:   "user_profile_id,n\r\nuprof_a,\"x\ny\"\r\n\r\n\n\r\nuprof_b," + long + "\r\nuprof_c,z\r\n",
			cfg:     CSVConfig{MaxRecordBytes: 64},
			records: 1,
			line:    7,
			is:      ErrRecordTooLarge,
			msg:     []string{"64 bytes", "quote"},
		},
		{
			name:    "record one byte over the limit",
			input:   "user_profile_id,n\nuprof_a," + strings.Repeat("x", 24) + "\n",
			cfg:     CSVConfig{MaxRecordBytes: 32},
			line:    2,
			is:      ErrRecordTooLarge,
			records: 0,
		},
		{
			name:    "header over the byte limit",
			input:   "\r\n\"user_profile_id\r\n" + long,
			cfg:     CSVConfig{MaxRecordBytes: 64},
			line:    2,
			is:      ErrRecordTooLarge,
			records: 0,
		},
		{
			name:    "quote never closed, default limit",
			input:   "user_profile_id,n\nuprof_a,\"" + strings.Repeat(long+"\n", 2<<20/len(long)),
			records: 0,
			line:    2,
			is:      ErrRecordTooLarge,
			msg:     []string{"1048576 bytes"},
		},
		{
			name:    "Latin-1 in a value",
			input:   "user_profile_id,Name\nuprof_a,Ana\n\nuprof_b,Bj\xf6rk\n",
			records: 1,
			line:    4,
			is:      ErrNotUTF8,
			text: `line 4: the file is not UTF-8 text: byte 0xF6 in column "Name" is not UTF-8 ` +
				`(is the file Latin-1 or Windows-1252?); save it as UTF-8 (in Excel, as "CSV UTF-8")`,
		},
		{
			name:    "Windows-1252 in the id, after a multi-line value",
			input:   "note,user_profile_id\n\"a\r\nb\",uprof_a\nx,uprof_\x80\n",
			records: 1,
			line:    4,
			is:      ErrNotUTF8,
			text: `line 4: the file is not UTF-8 text: byte 0x80 in column "user_profile_id" is not UTF-8 ` +
				`(is the file Latin-1 or Windows-1252?); save it as UTF-8 (in Excel, as "CSV UTF-8")`,
		},
		{
			name:  "Latin-1 in the header",
			input: "\n\"user_profile_id\",Pr\xe9nom\nuprof_a,x\n",
			line:  2,
			is:    ErrNotUTF8,
			text: `line 2: the file is not UTF-8 text: byte 0xE9 in column 2 is not UTF-8 ` +
				`(is the file Latin-1 or Windows-1252?); save it as UTF-8 (in Excel, as "CSV UTF-8")`,
		},
		{
			name:    "a cut UTF-8 sequence in a column with no header text",
			input:   "user_profile_id, \nuprof_a,\xc3\n",
			line:    2,
			is:      ErrNotUTF8,
			records: 0,
			msg:     []string{"byte 0xC3 in column 2 is not UTF-8"},
		},
		{
			name:  "UTF-16LE with a byte order mark",
			input: "\xff\xfeu\x00s\x00e\x00r\x00_\x00p\x00r\x00o\x00f\x00i\x00l\x00e\x00_\x00i\x00d\x00\r\x00\n\x00",
			is:    ErrNotUTF8,
			text:  `the file is not UTF-8 text: it is UTF-16; save it as UTF-8 (in Excel, as "CSV UTF-8")`,
		},
		{
			name:  "UTF-16BE with a byte order mark",
			input: "\xfe\xff\x00u\x00s\x00e\x00r\x00\n",
			is:    ErrNotUTF8,
			text:  `the file is not UTF-8 text: it is UTF-16; save it as UTF-8 (in Excel, as "CSV UTF-8")`,
		},
		{
			name:  "UTF-16LE without a byte order mark, tab-separated",
			input: "u\x00s\x00e\x00r\x00_\x00p\x00r\x00o\x00f\x00i\x00l\x00e\x00_\x00i\x00d\x00\t\x00n\x00\r\x00\n\x00",
			is:    ErrNotUTF8,
			text:  `the file is not UTF-8 text: it is UTF-16; save it as UTF-8 (in Excel, as "CSV UTF-8")`,
		},
		{
			name:  "UTF-16BE without a byte order mark",
			input: "\x00u\x00s\x00e\x00r",
			is:    ErrNotUTF8,
			text:  `the file is not UTF-8 text: it is UTF-16; save it as UTF-8 (in Excel, as "CSV UTF-8")`,
		},
		{
			name:    "NUL byte in a value",
			input:   "user_profile_id,Notes\nuprof_a,ok\nuprof_b,\"x\x00\"\n",
			records: 1,
			line:    3,
			is:      ErrNotUTF8,
			text: `line 3: the file is not UTF-8 text: NUL byte in column "Notes" ` +
				`(is the file UTF-16, or not text?); save it as UTF-8 (in Excel, as "CSV UTF-8")`,
		},
		{
			name:  "NUL byte in the header",
			input: "user_profile_id,a\x00\n",
			line:  1,
			is:    ErrNotUTF8,
			text: `line 1: the file is not UTF-8 text: NUL byte in column 2 ` +
				`(is the file UTF-16, or not text?); save it as UTF-8 (in Excel, as "CSV UTF-8")`,
		},
		{
			name:  "CR line endings",
			input: "user_profile_id,name\ruprof_a,Ana\ruprof_b,Li\r",
			line:  1,
			is:    ErrLineEndings,
			text:  "line 1: line endings are CR only, so the file reads as one row; save with LF or CRLF line endings",
		},
		{
			name:  "CR line endings, one column, after a blank line",
			input: "\r\nuser_profile_id\ruprof_a\ruprof_b",
			line:  2,
			is:    ErrLineEndings,
			text:  "line 2: line endings are CR only, so the file reads as one row; save with LF or CRLF line endings",
		},
		{
			name:  "CR line endings, file over the byte limit",
			input: "user_profile_id,name\r" + strings.Repeat("uprof_a,Ana\r", 10),
			cfg:   CSVConfig{MaxRecordBytes: 64},
			line:  1,
			is:    ErrRecordTooLarge,
			text: "line 1: line endings are CR only, so the file reads as one row (record too large); " +
				"save with LF or CRLF line endings",
		},
		{
			name:    "a line of spaces in a two-column file is blank, a short row is not",
			input:   "user_profile_id,a\n \nuprof_a\n",
			line:    3,
			is:      csv.ErrFieldCount,
			text:    "line 3: wrong number of fields: 1 fields, header has 2",
			records: 0,
		},
		{
			name:  "semicolon-separated",
			input: "user_profile_id;email\nuprof_a;a@example.com\n",
			line:  1,
			is:    ErrNoIDColumn,
			text: `line 1: no id column "user_profile_id" in header ["user_profile_id;email"]; ` +
				`this looks like a semicolon-separated file, but fields are read as separated by ',': ` +
				`read it with --delimiter ';', put the line "sep=;" above the header, or save the file with ',' between fields`,
		},
		{
			name:  "tab-separated",
			input: "Email\tUser Profile ID\ta;b\n",
			line:  1,
			is:    ErrNoIDColumn,
			text: `line 1: no id column "user_profile_id" in header ["Email\tUser Profile ID\ta;b"]; ` +
				`this looks like a tab-separated file, but fields are read as separated by ',': ` +
				`read it with --delimiter tab, put a line of "sep=" and a tab above the header, or save the file with ',' between fields`,
		},
		{
			name:  "semicolon-separated, quoted",
			input: "\"user_profile_id\";\"email\"\n",
			line:  1,
			is:    csv.ErrQuote,
			text: `line 1: extraneous or missing " in quoted-field (column 17); ` +
				`this looks like a semicolon-separated file, but fields are read as separated by ',': ` +
				`read it with --delimiter ';', put the line "sep=;" above the header, or save the file with ',' between fields`,
		},
		{
			name:  "comma-separated, read with semicolons",
			input: "user_profile_id,email\n",
			cfg:   CSVConfig{Comma: ';'},
			line:  1,
			is:    ErrNoIDColumn,
			text: `line 1: no id column "user_profile_id" in header ["user_profile_id,email"]; ` +
				`this looks like a comma-separated file, but fields are read as separated by ';': ` +
				`read it with --delimiter ',', put the line "sep=," above the header, or save the file with ';' between fields`,
		},
		{
			name:  "bad quoting in a comma-separated header gets no hint",
			input: "user_profile_id,\"a\";b\n",
			line:  1,
			is:    csv.ErrQuote,
			text:  `line 1: extraneous or missing " in quoted-field (column 19)`,
		},
		{
			name:    "lines after a sep line",
			input:   "sep=;\r\nuser_profile_id;n\r\nuprof_a;1\r\nuprof_b;\"x\r\ny\" z\r\n",
			records: 1,
			line:    4,
			is:      csv.ErrQuote,
			text:    `line 4: extraneous or missing " in quoted-field (line 5, column 2)`,
		},
		{
			name:    "field count after a sep line",
			input:   "sep=|\nuser_profile_id|n\nuprof_a|1|2\n",
			records: 0,
			line:    3,
			is:      csv.ErrFieldCount,
			text:    "line 3: wrong number of fields: 3 fields, header has 2",
		},
		{
			name:  "sep line naming a quote",
			input: "sep=\"\nuser_profile_id\n",
			line:  1,
			text:  `line 1: the line "sep=\"" names a separator that cannot separate fields`,
		},
		{
			name:  "sep line and nothing else",
			input: "sep=;\r\n\r\n",
			is:    ErrNoHeader,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, r := range []io.Reader{
				strings.NewReader(tt.input),
				iotest.OneByteReader(strings.NewReader(tt.input)),
			} {
				got := readAll(t, r, tt.cfg)
				if got.err == nil {
					t.Fatalf("got no error, want one wrapping %v", tt.is)
				}
				if len(got.records) != tt.records {
					t.Errorf("got %d records before the error, want %d", len(got.records), tt.records)
				}
				if tt.is != nil && !errors.Is(got.err, tt.is) {
					t.Errorf("got error %v, want one wrapping %v", got.err, tt.is)
				}

				var le *LineError
				switch {
				case tt.line == 0 && errors.As(got.err, &le):
					t.Errorf("got %T %v, want an error without a line", got.err, got.err)
				case tt.line != 0 && !errors.As(got.err, &le):
					t.Errorf("got %T %v, want a *LineError", got.err, got.err)
				case tt.line != 0 && le.Line != tt.line:
					t.Errorf("got error at line %d (%v), want line %d", le.Line, got.err, tt.line)
				}
				for _, m := range tt.msg {
					if !strings.Contains(got.err.Error(), m) {
						t.Errorf("got message %q, want it to contain %q", got.err, m)
					}
				}
				if tt.text != "" && got.err.Error() != tt.text {
					t.Errorf("got message\n%s\nwant\n%s", got.err, tt.text)
				}
			}
		})
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []CSVConfig{
		{Comma: '"'},
		{Comma: '\n'},
		{Comma: '\r'},
		{Comma: -1},
		{Comma: 0x110000},
		{MaxRecordBytes: -1},
	} {
		_, err := NewCSV(strings.NewReader("user_profile_id\n"), cfg)
		if err == nil || !strings.HasPrefix(err.Error(), "csv config: ") {
			t.Errorf("NewCSV with %+v: got error %v, want a csv config error", cfg, err)
		}
	}
}

func TestLineError(t *testing.T) {
	t.Parallel()
	err := error(&LineError{Line: 7, Err: csv.ErrFieldCount})
	if got, want := err.Error(), "line 7: wrong number of fields"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if !errors.Is(err, csv.ErrFieldCount) {
		t.Errorf("errors.Is(%v, csv.ErrFieldCount) = false, want true", err)
	}
}

func TestColumnsIsACopy(t *testing.T) {
	t.Parallel()
	c, err := NewCSV(strings.NewReader("user_profile_id,a\n"), CSVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c.Columns()[0] = "changed"
	if got := c.Columns(); got[0] != "a" {
		t.Errorf("got columns %q after changing a returned slice, want [\"a\"]", got)
	}
}
