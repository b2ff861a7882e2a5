package source

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseDelimiter(t *testing.T) {
	t.Parallel()
	good := map[string]rune{",": ',', ";": ';', "tab": '\t', "TAB": '\t', `\t`: '\t', "\t": '\t', "|": '|', "§": '§'}
	for in, want := range good {
		if got, err := ParseDelimiter(in); err != nil || got != want {
			t.Errorf("ParseDelimiter(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":   "empty",
		";;": `";;": use`,
		`"`:  "cannot separate fields",
		"\n": "cannot separate fields",
		"\r": "cannot separate fields",
	}
	for in, want := range bad {
		if _, err := ParseDelimiter(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDelimiter(%q): err %v, want one containing %q", in, err, want)
		}
	}
}

// TestDelimiters reads the same profiles as exported with each separator,
// chosen by CSVConfig.Comma (the --delimiter flag) or a "sep=" line.
func TestDelimiters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		input string
		comma rune
		first int // line of the first record
	}{
		{"semicolon by flag", "user_profile_id;email;note\nuprof_a;a@example.com;\"x;y\"\n", ';', 2},
		{"tab by flag", "user_profile_id\temail\tnote\nuprof_a\ta@example.com\tx;y\n", '\t', 2},
		{"semicolon by sep line", "sep=;\r\nuser_profile_id;email;note\r\nuprof_a;a@example.com;\"x;y\"\r\n", 0, 3},
		{"sep line wins over the flag", "sep=;\nuser_profile_id;email;note\nuprof_a;a@example.com;\"x;y\"\n", '\t', 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := readAll(t, strings.NewReader(tt.input), CSVConfig{Comma: tt.comma})
			if got.err != nil {
				t.Fatal(got.err)
			}
			want := []Record{rec(tt.first, "uprof_a", "a@example.com", "x;y")}
			if fmt.Sprint(got.records) != fmt.Sprint(want) || fmt.Sprint(got.columns) != "[email note]" {
				t.Errorf("got %v %v, want %v [email note]", got.columns, got.records, want)
			}
		})
	}
}

func TestDuplicateHeaderNames(t *testing.T) {
	t.Parallel()
	tests := []struct{ input, want string }{
		{"user_profile_id,email,name,email\n",
			`line 1: duplicate column: "email" (column 2) and "email" (column 4) both become "email"; rename one`},
		{"sep=;\nEmail;user_profile_id;EMAIL \n",
			`line 2: duplicate column: "Email" (column 1) and "EMAIL " (column 3) both become "email"; rename one`},
	}
	for _, tt := range tests {
		got := readAll(t, strings.NewReader(tt.input), CSVConfig{})
		if got.err == nil || got.err.Error() != tt.want || !errors.Is(got.err, ErrDuplicateColumn) {
			t.Errorf("%q: err\n%v\nwant\n%s", tt.input, got.err, tt.want)
		}
	}
}

func TestLongFields(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 900<<10) // under the 1 MiB default
	input := "user_profile_id,note\nuprof_a,\"" + long + "\"\nuprof_b,short\n"
	got := readAll(t, strings.NewReader(input), CSVConfig{})
	if got.err != nil || len(got.records) != 2 || got.records[0].Values[0] != long || got.records[1].Line != 3 {
		t.Fatalf("long field: err %v, %d records; want both, the first with its %d bytes intact", got.err, len(got.records), len(long))
	}

	input = "user_profile_id,note\nuprof_a,ok\nuprof_b," + strings.Repeat("y", 2<<20) + "\n"
	got = readAll(t, strings.NewReader(input), CSVConfig{})
	want := "line 3: record too large: longer than 1048576 bytes; check for a quote that is never closed"
	if got.err == nil || got.err.Error() != want || len(got.records) != 1 {
		t.Errorf("over-long field: err %v after %d records, want %q after 1", got.err, len(got.records), want)
	}

	input = "user_profile_id\nuprof_" + strings.Repeat("a", 200) + "\n"
	got = readAll(t, strings.NewReader(input), CSVConfig{})
	var s Screen
	if v, reason, _ := s.Check(got.records[0]); v != Invalid || !strings.Contains(reason.Error(), "longer than 128") {
		t.Errorf("a 206-byte id: %v %v, want invalid, longer than 128", v, reason)
	}
}

// TestExcelNumbers checks that ids Excel turned into numbers are invalid,
// with that reason, on their lines.
func TestExcelNumbers(t *testing.T) {
	t.Parallel()
	input := "user_profile_id,email\nuprof_ok1,a@example.com\n1.23E+18,b@example.com\n1230000000000000000,c@example.com\n\"1,23E+18\",d@example.com\n"
	got := readAll(t, strings.NewReader(input), CSVConfig{})
	if got.err != nil {
		t.Fatal(got.err)
	}
	var s Screen
	var sum Summary
	for _, r := range got.records {
		v, reason, first := s.Check(r)
		sum.Add(r, v, reason, first)
	}
	const why = "id looks like a number Excel converted (1.23E+18, 1230000000000000000): " +
		"the original id is lost; export the ids again with the column formatted as text"
	want := []string{
		`line 3: invalid id "1.23E+18": ` + why,
		`line 4: invalid id "1230000000000000000": ` + why,
		`line 5: invalid id "1,23E+18": ` + why,
	}
	if sum.Valid != 1 || len(sum.Problems) != len(want) {
		t.Fatalf("got %d valid, problems %v; want 1 valid and %d problems", sum.Valid, sum.Problems, len(want))
	}
	for i, p := range sum.Problems {
		if p.String() != want[i] {
			t.Errorf("problem %d:\n%s\nwant\n%s", i, p, want[i])
		}
	}
}
