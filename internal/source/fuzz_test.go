package source

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

var columnPattern = regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`)

// FuzzCSV reads arbitrary input, with the default record limit or a tiny
// one, and checks what holds for every input: no panic; unique column
// names; records in line order, each as wide as the header, their cells
// UTF-8 without NULs; the meter and the parser agree on where each record
// starts; errors from Next are *LineError and stay; Read == Valid +
// Invalid + Repeats; the same result whether the input arrives whole or in
// pieces. When the whole file reads,
// the records are compared with what encoding/csv itself makes of it.
func FuzzCSV(f *testing.F) {
	for _, name := range goldenInputs {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(0))
		f.Add(b, uint8(40))
	}
	f.Add([]byte("user_profile_id,a\r\n\r\n\"x\r\ny\",1\n,\n"), uint8(0))
	f.Add([]byte("\uFEFF\"User_Profile_ID\";b\n\r\r\n uprof_a ;\"\"\"\"\n"), uint8(0))
	f.Add([]byte("user_profile_id,a\nuprof_a,\"never closed\n\n\nuprof_b,2\n"), uint8(16))
	f.Add([]byte("user_profile_id,Status,status\n"), uint8(0))
	f.Add([]byte("sep=;\r\nuser_profile_id;a\r\n \r\nuprof_a;\"x;\r\ny\"\r\n\t\n"), uint8(0))
	f.Add([]byte("user_profile_id,name\nuprof_a,Bj\xf6rk\nuprof_b,\x00\n"), uint8(0))
	f.Add([]byte("\xff\xfeu\x00s\x00e\x00r\x00\r\x00\n\x00"), uint8(0))
	f.Add([]byte("user_profile_id,name\ruprof_a,x\ruprof_b,y\r"), uint8(0))
	f.Add([]byte("user_profile_id;name\nuprof_a;x\n"), uint8(0))

	f.Fuzz(func(t *testing.T, data []byte, limit uint8) {
		cfg := CSVConfig{MaxRecordBytes: int(limit)}
		got := fuzzRead(t, bytes.NewReader(data), cfg)

		// How the input arrives must not change what is read.
		for _, r := range []io.Reader{
			iotest.OneByteReader(bytes.NewReader(data)),
			iotest.HalfReader(bytes.NewReader(data)),
		} {
			if again := fuzzRead(t, r, cfg); !reflect.DeepEqual(again, got) {
				t.Fatalf("read in one go:\n%+v\nread in pieces:\n%+v", got, again)
			}
		}

		if got.err == "" && limit == 0 {
			compareWithCSV(t, data, got.idIndex, got.records)
		}
	})
}

// fuzzRun is what fuzzRead makes of an input.
type fuzzRun struct {
	columns []string
	idIndex int
	records []Record
	err     string // the error that ended the read, or ""
}

// fuzzRead reads and screens r to the end, failing t where an invariant
// breaks.
func fuzzRead(t *testing.T, r io.Reader, cfg CSVConfig) fuzzRun {
	t.Helper()
	c, err := NewCSV(r, cfg)
	if err != nil {
		return fuzzRun{err: err.Error()}
	}

	run := fuzzRun{columns: c.Columns(), idIndex: c.idIndex}
	seen := map[string]bool{}
	for _, name := range run.columns {
		if !columnPattern.MatchString(name) || seen[name] {
			t.Fatalf("columns %q: %q is not a unique [a-z0-9_] name", run.columns, name)
		}
		seen[name] = true
	}

	var screen Screen
	var sum Summary
	for {
		rec, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Line < 1 {
				t.Fatalf("got error %T %v, want a *LineError with a line", err, err)
			}
			if _, again := c.Next(); again != err {
				t.Fatalf("Next after %v returned %v, want the same error", err, again)
			}
			run.err = err.Error()
			return run
		}

		if rec.Line != c.meter.line {
			t.Fatalf("record at line %d, but the meter saw it start at line %d", rec.Line, c.meter.line)
		}
		if n := len(run.records); n > 0 && rec.Line <= run.records[n-1].Line {
			t.Fatalf("record at line %d follows one at line %d", rec.Line, run.records[n-1].Line)
		}
		if len(rec.Values) != len(run.columns) {
			t.Fatalf("line %d: %d values for %d columns", rec.Line, len(rec.Values), len(run.columns))
		}
		if rec.ID != strings.Trim(rec.ID, " \t") {
			t.Fatalf("line %d: id %q is not trimmed", rec.Line, rec.ID)
		}
		for _, f := range append([]string{rec.ID}, rec.Values...) {
			if !utf8.ValidString(f) || strings.IndexByte(f, 0) >= 0 {
				t.Fatalf("line %d: value %q is not UTF-8 text", rec.Line, f)
			}
		}
		v, reason, first := screen.Check(rec)
		if (v == Invalid) != (reason != nil) || (v == Repeat) != (first > 0) || first >= rec.Line {
			t.Fatalf("line %d: Check(%q) = %v, %v, %d", rec.Line, rec.ID, v, reason, first)
		}
		sum.Add(rec, v, reason, first)
		run.records = append(run.records, rec)
	}

	if sum.Read != len(run.records) || sum.Read != sum.Valid+sum.Invalid+sum.Repeats {
		t.Fatalf("%d records, summary %d read = %d valid + %d invalid + %d repeats",
			len(run.records), sum.Read, sum.Valid, sum.Invalid, sum.Repeats)
	}
	return run
}

// compareWithCSV checks records against encoding/csv's own reading of data:
// the same rows, less a "sep=" line, the header and the rows with no text,
// at the same lines, with the id from column idIndex and the other cells
// unchanged.
func compareWithCSV(t *testing.T, data []byte, idIndex int, records []Record) {
	t.Helper()
	data = bytes.TrimPrefix(data, bom)
	comma, skipped := ',', 0
	if rest, ok := bytes.CutPrefix(data, []byte("sep=")); ok {
		sep, size := utf8.DecodeRune(rest)
		for _, eol := range []string{"\n", "\r\n"} {
			if after, ok := bytes.CutPrefix(rest[size:], []byte(eol)); ok {
				data, comma, skipped = after, sep, 1
				break
			}
		}
	}

	r := csv.NewReader(bytes.NewReader(data))
	r.Comma = comma
	r.FieldsPerRecord = -1
	header := true
	var want []Record
	for {
		fields, err := r.Read()
		if err != nil {
			break
		}
		if len(fields) == 1 && strings.Trim(fields[0], " \t") == "" || strings.Join(fields, "") == "" {
			continue // a blank row
		}
		if header {
			header = false
			continue
		}
		line, _ := r.FieldPos(0)
		id := strings.Trim(fields[idIndex], " \t")
		want = append(want, Record{Line: line + skipped, ID: id, Values: slices.Delete(fields, idIndex, idIndex+1)})
	}

	if len(records) != len(want) {
		t.Fatalf("read %d records, encoding/csv reads %d", len(records), len(want))
	}
	for i, rec := range records {
		w := want[i]
		if rec.Line != w.Line || rec.ID != w.ID || !slices.Equal(rec.Values, w.Values) {
			t.Fatalf("record %d: got line %d id %q values %q, encoding/csv gives line %d id %q values %q",
				i, rec.Line, rec.ID, rec.Values, w.Line, w.ID, w.Values)
		}
	}
}

// FuzzCSVDelimiter reads arbitrary input with each separator --delimiter
// offers, and checks the invariants fuzzRead checks, for whole and
// piecewise reads alike.
func FuzzCSVDelimiter(f *testing.F) {
	f.Add([]byte("user_profile_id;email\nuprof_a;\"a;b\"\n"), uint8(1))
	f.Add([]byte("user_profile_id\temail\nuprof_a\t\"a\tb\"\n"), uint8(2))
	f.Add([]byte("sep=|\nuser_profile_id|email\nuprof_a|x\n"), uint8(0))
	f.Add([]byte("user_profile_id,email\nuprof_a,x\n"), uint8(1))

	commas := []rune{',', ';', '\t', '|'}
	f.Fuzz(func(t *testing.T, data []byte, pick uint8) {
		cfg := CSVConfig{Comma: commas[int(pick)%len(commas)]}
		got := fuzzRead(t, bytes.NewReader(data), cfg)
		if again := fuzzRead(t, iotest.OneByteReader(bytes.NewReader(data)), cfg); !reflect.DeepEqual(again, got) {
			t.Fatalf("read in one go:\n%+v\nread byte by byte:\n%+v", got, again)
		}
	})
}
