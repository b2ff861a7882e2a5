package source

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/enrollq/enrollq/internal/uprof"
)

// TestMessyFile pins what the golden dump of profiles-messy.csv must show,
// so that a careless -update cannot bless a wrong reading.
func TestMessyFile(t *testing.T) {
	t.Parallel()
	c, err := NewCSV(bytes.NewReader(readTestdata(t, "profiles-messy.csv")), CSVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprintf("%q", c.Columns()), `["email" "first_name" "notes"]`; got != want {
		t.Errorf("got columns %s, want %s", got, want)
	}

	var screen Screen
	var sum Summary
	verdicts := map[int]Verdict{}
	notes := map[int]string{}
	for {
		rec, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		v, reason, first := screen.Check(rec)
		sum.Add(rec, v, reason, first)
		verdicts[rec.Line] = v
		notes[rec.Line] = rec.Values[2]
		if v == Repeat && (rec.Line != 6 || first != 2) {
			t.Errorf("got line %d a repeat of line %d, want only line 6 a repeat of line 2", rec.Line, first)
		}
	}

	want := map[int]Verdict{
		2: Valid, 3: Valid, 6: Repeat, 7: Valid,
		8: Invalid, 9: Invalid, 10: Invalid, 11: Invalid, 12: Invalid,
		13: Valid, 14: Valid,
	}
	if fmt.Sprint(verdicts) != fmt.Sprint(want) {
		t.Errorf("got verdicts by line %v, want %v", verdicts, want)
	}
	if sum.Read != 11 || sum.Valid != 5 || sum.Invalid != 5 || sum.Repeats != 1 {
		t.Errorf("got summary %d read, %d valid, %d invalid, %d repeats; want 11, 5, 5, 1",
			sum.Read, sum.Valid, sum.Invalid, sum.Repeats)
	}
	if got, want := notes[3], "line one\nline two of the same note"; got != want {
		t.Errorf("got line 3 note %q, want %q", got, want)
	}
	if got, want := notes[13], `quoted "nickname" inside`; got != want {
		t.Errorf("got line 13 note %q, want %q", got, want)
	}
}

func TestScreen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rec       Record
		verdict   Verdict
		reason    error
		firstLine int
	}{
		{Record{Line: 2, ID: "uprof_a"}, Valid, nil, 0},
		{Record{Line: 3, ID: "uprof_b"}, Valid, nil, 0},
		{Record{Line: 4, ID: "uprof_a"}, Repeat, nil, 2},
		{Record{Line: 5, ID: "uprof_A"}, Valid, nil, 0},
		{Record{Line: 6, ID: "uprof_"}, Invalid, uprof.ErrPrefixOnly, 0},
		{Record{Line: 7, ID: "uprof_"}, Invalid, uprof.ErrPrefixOnly, 0},
		{Record{Line: 8, ID: ""}, Invalid, uprof.ErrEmpty, 0},
		{Record{Line: 9, ID: "uprof_a"}, Repeat, nil, 2},
		{Record{Line: math.MaxInt32 + 10, ID: "uprof_c"}, Valid, nil, 0},
		{Record{Line: math.MaxInt32 + 11, ID: "uprof_c"}, Repeat, nil, math.MaxInt32},
	}
	var s Screen
	for _, tt := range tests {
		v, reason, first := s.Check(tt.rec)
		if v != tt.verdict || !errors.Is(reason, tt.reason) || first != tt.firstLine {
			t.Errorf("Check(line %d, %q) = %v, %v, %d; want %v, %v, %d",
				tt.rec.Line, tt.rec.ID, v, reason, first, tt.verdict, tt.reason, tt.firstLine)
		}
	}
}

func TestVerdictString(t *testing.T) {
	t.Parallel()
	for v, want := range map[Verdict]string{
		0: "Verdict(0)", Valid: "valid", Invalid: "invalid", Repeat: "repeat", 9: "Verdict(9)",
	} {
		if got := v.String(); got != want {
			t.Errorf("Verdict(%d).String() = %q, want %q", int(v), got, want)
		}
	}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	var sum Summary
	sum.Add(Record{Line: 2, ID: "uprof_a"}, Valid, nil, 0)
	sum.Add(Record{Line: 3, ID: "uprof_a"}, Repeat, nil, 2)
	sum.Add(Record{Line: 4, ID: "\x1b[2Jbad\n"}, Invalid, uprof.ErrNoPrefix, 0)
	for i := range MaxProblems + 5 {
		sum.Add(Record{Line: 10 + i, ID: ""}, Invalid, uprof.ErrEmpty, 0)
	}

	if sum.Read != MaxProblems+8 || sum.Valid != 1 || sum.Repeats != 1 || sum.Invalid != MaxProblems+6 {
		t.Errorf("got %d read, %d valid, %d invalid, %d repeats; want %d, 1, %d, 1",
			sum.Read, sum.Valid, sum.Invalid, sum.Repeats, MaxProblems+8, MaxProblems+6)
	}
	if len(sum.Problems) != MaxProblems || sum.Omitted() != 7 {
		t.Errorf("got %d problems kept and %d omitted, want %d and 7", len(sum.Problems), sum.Omitted(), MaxProblems)
	}
	for i, want := range []string{
		`line 3: repeat of line 2 ("uprof_a")`,
		`line 4: invalid id "\x1b[2Jbad\n": id must start with uprof_`,
		`line 10: invalid id "": empty id`,
	} {
		if got := sum.Problems[i].String(); got != want {
			t.Errorf("got problem %d %s, want %s", i, got, want)
		}
	}
}

func TestSummaryCutsLongIDs(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("x", 1<<20)
	var sum Summary
	sum.Add(Record{Line: 2, ID: id}, Invalid, uprof.Validate(id), 0)

	p := sum.Problems[0]
	if len(p.ID) != maxProblemID || !strings.HasPrefix(id, p.ID) {
		t.Errorf("got a kept id of %d bytes, want the first %d bytes of the id", len(p.ID), maxProblemID)
	}
	if want := "id is longer than 128 characters (id cut to its first 256 of 1048576 bytes)"; p.Reason != want {
		t.Errorf("got reason %q, want %q", p.Reason, want)
	}
}

func TestSummaryRefusesNoVerdict(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("Add with the zero Verdict did not panic")
		}
	}()
	var sum Summary
	sum.Add(Record{Line: 2, ID: "uprof_a"}, 0, nil, 0)
}

func TestScreenDoesNotAllocate(t *testing.T) {
	var s Screen
	s.Check(Record{Line: 1, ID: "uprof_warm"})
	rec := Record{Line: 2, ID: "uprof_01Hq3T9cVbW2mXy7LpZ4sQ8e"}
	s.Check(rec)
	if n := testing.AllocsPerRun(100, func() { s.Check(rec) }); n != 0 {
		t.Errorf("Check of a seen id allocates %v times, want 0", n)
	}
}
