package source

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

var goldenInputs = []string{"profiles-25.csv", "profiles-messy.csv"}

// TestGolden reads each file in testdata, screens every record and compares
// a dump of the result with the file's .golden twin.
func TestGolden(t *testing.T) {
	t.Parallel()
	for _, name := range goldenInputs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			input := readTestdata(t, name)
			got, err := dump(bytes.NewReader(input))
			if err != nil {
				t.Fatalf("dump: %v", err)
			}

			golden := filepath.Join("testdata", strings.TrimSuffix(name, ".csv")+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("dump of %s differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s",
					name, golden, got, want)
			}
		})
	}
}

// TestChunking reads the golden inputs through readers that hand over odd
// amounts at a time; the records must not depend on it.
func TestChunking(t *testing.T) {
	t.Parallel()
	readers := map[string]func(io.Reader) io.Reader{
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+eof": iotest.DataErrReader,
	}
	for _, name := range goldenInputs {
		input := readTestdata(t, name)
		want, err := dump(bytes.NewReader(input))
		if err != nil {
			t.Fatalf("%s: dump: %v", name, err)
		}
		for how, wrap := range readers {
			got, err := dump(wrap(bytes.NewReader(input)))
			if err != nil {
				t.Fatalf("%s, %s: dump: %v", name, how, err)
			}
			if got != want {
				t.Errorf("%s read %s at a time:\ngot:\n%s\nwant:\n%s", name, how, got, want)
			}
		}
	}
}

// TestReadFailure checks that an error from the input ends the read and is
// not mistaken for the end of the file.
func TestReadFailure(t *testing.T) {
	t.Parallel()
	input := readTestdata(t, "profiles-25.csv")
	r := iotest.TimeoutReader(iotest.OneByteReader(bytes.NewReader(input)))

	c, err := NewCSV(r, CSVConfig{})
	if err == nil {
		_, err = c.Next()
	}
	if !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("got error %v, want one wrapping %v", err, iotest.ErrTimeout)
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dump reads and screens every record of r and renders what came out, one
// line per record, values quoted.
func dump(r io.Reader) (string, error) {
	c, err := NewCSV(r, CSVConfig{})
	if err != nil {
		return "", err
	}

	var b strings.Builder
	fmt.Fprintf(&b, "columns %q\n", c.Columns())
	var screen Screen
	var sum Summary
	for {
		rec, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return b.String(), err
		}
		v, reason, first := screen.Check(rec)
		sum.Add(rec, v, reason, first)
		fmt.Fprintf(&b, "line %d: %v", rec.Line, v)
		switch v {
		case Invalid:
			fmt.Fprintf(&b, " (%v)", reason)
		case Repeat:
			fmt.Fprintf(&b, " of line %d", first)
		}
		fmt.Fprintf(&b, " id=%q values=%q\n", rec.ID, rec.Values)
	}

	fmt.Fprintf(&b, "read %d, valid %d, invalid %d, repeats %d, omitted %d\n",
		sum.Read, sum.Valid, sum.Invalid, sum.Repeats, sum.Omitted())
	for _, p := range sum.Problems {
		fmt.Fprintf(&b, "%s\n", p)
	}
	return b.String(), nil
}
