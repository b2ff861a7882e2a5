package source

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestRepeatsAgreesWithScreen reads both shared files with both screens:
// the two-pass Repeats must give the one-pass Screen's verdicts.
func TestRepeatsAgreesWithScreen(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"profiles-25.csv", "profiles-messy.csv", "dups"} {
		input := readInput(t, name)

		rep := NewRepeats()
		for _, rec := range records(t, input) {
			rep.Add(rec)
		}
		rep.Finish()

		var screen Screen
		for _, rec := range records(t, input) {
			v1, r1, f1 := screen.Check(rec)
			v2, r2, f2 := rep.Check(rec)
			if v1 != v2 || !errors.Is(r2, r1) || f1 != f2 {
				t.Errorf("%s line %d: Repeats = %v %v %d, Screen = %v %v %d", name, rec.Line, v2, r2, f2, v1, r1, f1)
			}
		}
	}
}

// TestRepeatsHashCollision forces every id into one hash group: distinct
// ids must still be told apart.
func TestRepeatsHashCollision(t *testing.T) {
	t.Parallel()
	rep := NewRepeats()
	recs := []Record{{Line: 2, ID: "uprof_a"}, {Line: 3, ID: "uprof_b"}, {Line: 4, ID: "uprof_b"}, {Line: 5, ID: "uprof_a"}}
	for _, rec := range recs {
		rep.hashes = append(rep.hashes, 42) // one hash for all
		rep.lines = append(rep.lines, uint32(rec.Line))
	}
	rep.Finish()
	want := []struct {
		v     Verdict
		first int
	}{{Valid, 0}, {Valid, 0}, {Repeat, 3}, {Repeat, 2}}
	for i, rec := range recs {
		v, _, first := rep.Check(rec)
		if v != want[i].v || first != want[i].first {
			t.Errorf("line %d: %v of line %d, want %v of line %d", rec.Line, v, first, want[i].v, want[i].first)
		}
	}
}

// TestRepeatsRewind checks the same records three times: after Rewind,
// each pass gives the verdicts of the first, and without it a first
// occurrence would read as a repeat of itself.
func TestRepeatsRewind(t *testing.T) {
	t.Parallel()
	recs := records(t, readInput(t, "dups"))
	rep := NewRepeats()
	rep.Rewind() // before Finish: nothing to forget
	for _, rec := range recs {
		rep.Add(rec)
	}
	rep.Finish()

	type verdict struct {
		v     Verdict
		first int
	}
	pass := func() []verdict {
		var out []verdict
		for _, rec := range recs {
			v, _, first := rep.Check(rec)
			out = append(out, verdict{v, first})
		}
		return out
	}
	want := pass()
	if want[0] != (verdict{Valid, 0}) || want[37] != (verdict{Repeat, 2}) {
		t.Fatalf("first pass: line 2 %v, line 39 %v; want valid, and repeat of line 2", want[0], want[37])
	}

	if again := pass(); again[0] != (verdict{Repeat, 2}) {
		t.Errorf("a pass without Rewind: line 2 is %v, want it a repeat of itself (what Rewind is for)", again[0])
	}
	for n := 1; n <= 2; n++ {
		rep.Rewind()
		got := pass()
		for i := range recs {
			if got[i] != want[i] {
				t.Errorf("Rewind %d, line %d: %v of line %d, want %v of line %d",
					n, recs[i].Line, got[i].v, got[i].first, want[i].v, want[i].first)
			}
		}
	}
}

func readInput(t *testing.T, name string) string {
	t.Helper()
	if name == "dups" {
		var b strings.Builder
		b.WriteString("user_profile_id,n\n")
		for i := range 500 {
			fmt.Fprintf(&b, "uprof_%d,%d\n", i%37, i)
		}
		return b.String()
	}
	return string(readTestdata(t, name))
}

func records(t *testing.T, input string) []Record {
	t.Helper()
	c, err := NewCSV(strings.NewReader(input), CSVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []Record
	for {
		rec, err := c.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
}
