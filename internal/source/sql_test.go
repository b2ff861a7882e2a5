package source

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSpoolRoundTrip(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	sw := newSpoolWriter(&buf)
	rows := []struct {
		row    int
		null   bool
		fields []string
	}{
		{0, false, []string{"email", "note"}},
		{1, false, []string{" uprof_a\t", "a@example.com", "line one\nline two"}},
		{2, true, []string{"", "", ""}},
		{300, false, []string{"uprof_b", "", "ünïcode, \"quotes\""}},
	}
	for _, r := range rows {
		if err := sw.write(r.row, r.null, r.fields); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.flush(); err != nil {
		t.Fatal(err)
	}

	sp, err := OpenSpool(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := sp.Columns(); !slices.Equal(got, []string{"email", "note"}) {
		t.Errorf("columns = %q", got)
	}
	want := []Record{
		{Line: 1, ID: "uprof_a", Values: []string{"a@example.com", "line one\nline two"}},
		{Line: 2, Null: true, Values: []string{"", ""}},
		{Line: 300, ID: "uprof_b", Values: []string{"", "ünïcode, \"quotes\""}},
	}
	for _, w := range want {
		got, err := sp.Next()
		if err != nil || got.Line != w.Line || got.ID != w.ID || got.Null != w.Null || !slices.Equal(got.Values, w.Values) {
			t.Errorf("Next() = %+v, %v; want %+v", got, err, w)
		}
	}
	if _, err := sp.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last row: %v, want io.EOF", err)
	}
}

func TestSQLText(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 4, 4, 5, 500_000_000, time.FixedZone("", 3600))
	for _, tt := range []struct {
		in   any
		want string
	}{
		{nil, ""}, {"x", "x"}, {[]byte("bytes"), "bytes"}, {[]byte("Zoë"), "Zoë"},
		{[]byte{0x00, 0xff}, `\x00ff`}, {[]byte{0xc3}, `\xc3`}, {at, "2026-01-02T03:04:05.5Z"},
		{int64(-7), "-7"}, {3.25, "3.25"}, {1e21, "1000000000000000000000"}, {true, "true"},
	} {
		if got := text(tt.in); got != tt.want {
			t.Errorf("text(%#v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSQLColumns(t *testing.T) {
	t.Parallel()
	id, cols, err := sqlColumns([]string{"profile", "First Name", "status"}, "")
	if err != nil || id != 0 || !slices.Equal(cols, []string{"first_name", "input_status"}) {
		t.Errorf("default id column: %d %q %v", id, cols, err)
	}
	id, cols, err = sqlColumns([]string{"email", "User_Profile_ID"}, "user_profile_id")
	if err != nil || id != 1 || !slices.Equal(cols, []string{"email"}) {
		t.Errorf("named id column: %d %q %v", id, cols, err)
	}
	if _, _, err := sqlColumns([]string{"a", "b"}, "id"); !errors.Is(err, ErrNoIDColumn) {
		t.Errorf("missing id column: %v, want ErrNoIDColumn", err)
	}
	if _, _, err := sqlColumns([]string{"id", "e-mail", "E Mail"}, ""); !errors.Is(err, ErrDuplicateColumn) {
		t.Errorf("two columns named e_mail: %v, want ErrDuplicateColumn", err)
	}
}

func TestProblemFormatRows(t *testing.T) {
	t.Parallel()
	var s Summary
	var sc Screen
	for _, rec := range []Record{{Line: 1, ID: "uprof_a"}, {Line: 2, Null: true}, {Line: 3, ID: "uprof_a"}} {
		v, reason, first := sc.Check(rec)
		s.Add(rec, v, reason, first)
	}
	got := []string{s.Problems[0].Format("row"), s.Problems[1].Format("row")}
	want := []string{"row 2: invalid id: NULL", `row 3: repeat of row 1 ("uprof_a")`}
	if !slices.Equal(got, want) {
		t.Errorf("problems = %q, want %q", got, want)
	}
}

func TestCheckQuery(t *testing.T) {
	t.Parallel()
	for _, q := range []string{"SELECT 1", " select id from t", "WITH a AS (SELECT 1) SELECT * FROM a",
		"(SELECT 1)", "-- c\nSELECT 1", "/* c */ SELECT 1", "# c\nSELECT 1", "TABLE t", "VALUES ('uprof_a')"} {
		if err := CheckQuery(q); err != nil {
			t.Errorf("CheckQuery(%q) = %v, want nil", q, err)
		}
	}
	for q, word := range map[string]string{"DROP TABLE t": "DROP", "/* x */ delete from t": "DELETE",
		"--\ncreate table t (a int)": "CREATE", "selectx": "SELECTX", "CALL p()": "CALL", "LOAD DATA INFILE 'f'": "LOAD"} {
		err := CheckQuery(q)
		if err == nil || !strings.Contains(err.Error(), "starts with "+word) {
			t.Errorf("CheckQuery(%q) = %v, want it refused, naming %s", q, err, word)
		}
	}
	for _, q := range []string{
		"SELECT user_profile_id FROM c INTO OUTFILE '/tmp/x'",
		"select id from c into dumpfile '/tmp/x'",
		"SELECT id INTO @v FROM c",
		"SELECT id INTO new_table FROM c",
		"(SELECT id FROM c) Into\nOUTFILE 'f'",
		"SELECT 'a''b' AS x, id FROM c INTO OUTFILE 'f'",
		"SELECT 'it\\'s', id FROM c /* ok */ INTO OUTFILE 'f'",
		"SELECT $$ x $$, id FROM c INTO t",
		"SELECT 'uprof_a' /*! INTO OUTFILE '/tmp/x' */",
		"SELECT 'uprof_a' /*!50000 INTO OUTFILE '/tmp/x' */",
		"SELECT 'uprof_a' /*M! INTO OUTFILE '/tmp/x' */",
	} {
		err := CheckQuery(q)
		if err == nil || !strings.Contains(err.Error(), "INTO") {
			t.Errorf("CheckQuery(%q) = %v, want it refused for its INTO", q, err)
		}
	}
	// INTO inside literals, identifiers and comments is no keyword.
	for _, q := range []string{
		"SELECT id, 'into outfile' AS note FROM c",
		`SELECT "into", id FROM c`,
		"SELECT `into`, id FROM c",
		"SELECT id FROM c -- into outfile\n",
		"SELECT id FROM c # into\n WHERE 1=1",
		"SELECT id /* INTO */ FROM c",
		"SELECT $tag$ into $tag$, id FROM c WHERE id = $1",
		"SELECT id FROM c WHERE note = 'a\\' into'",
		"SELECT into_date, intox, id FROM c",
	} {
		if err := CheckQuery(q); err != nil {
			t.Errorf("CheckQuery(%q) = %v, want nil", q, err)
		}
	}
	for _, q := range []string{"", "  ", "/* unclosed", "-- only a comment"} {
		if err := CheckQuery(q); err == nil {
			t.Errorf("CheckQuery(%q) = nil, want an error", q)
		}
	}
}
