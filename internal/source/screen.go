package source

import (
	"fmt"
	"hash"
	"hash/fnv"
	"math"
	"strings"

	"github.com/enrollq/enrollq/internal/uprof"
)

// Verdict is what Screen makes of a record. The zero value is no verdict.
type Verdict int

const (
	// Valid: a well-formed id, first seen on this line. Send it.
	Valid Verdict = iota + 1
	// Invalid: the id is malformed; the reason says how. Never send it.
	Invalid
	// Repeat: a well-formed id already seen earlier in the file. Skip it;
	// the first occurrence is the one sent.
	Repeat
)

func (v Verdict) String() string {
	switch v {
	case Valid:
		return "valid"
	case Invalid:
		return "invalid"
	case Repeat:
		return "repeat"
	default:
		return fmt.Sprintf("Verdict(%d)", int(v))
	}
}

// Screen validates the ids of one file and spots repeats. The zero value
// is ready to use. A Screen is not safe for concurrent use.
//
// It remembers each valid id as a 128-bit FNV-1a hash with the line it was
// first seen on, about 20 bytes of map entry per distinct id plus the map's
// slack, so a million ids take tens of MiB however long the ids are. Two
// distinct ids with the same hash would make the second a Repeat of the
// first; by chance that is out of reach (about 1 in 10^26 for a million
// ids), and the report names both lines, so a person can check.
type Screen struct {
	seen map[[16]byte]int32 // id hash -> line first seen; lines past MaxInt32 are stored as MaxInt32
	hash hash.Hash
	id   [uprof.MaxLen]byte // the id being hashed, copied so that it need not escape
	sum  [16]byte
}

// Check returns rec's verdict. For Invalid, reason is the error from
// uprof.Validate; for Repeat, firstLine is the line the id was first seen
// on. Invalid ids are not remembered.
func (s *Screen) Check(rec Record) (v Verdict, reason error, firstLine int) {
	if rec.Null {
		return Invalid, ErrNullID, 0
	}
	if err := uprof.Validate(rec.ID); err != nil {
		return Invalid, err, 0
	}

	key := s.key(rec.ID)
	if first, ok := s.seen[key]; ok {
		return Repeat, nil, int(first)
	}
	if s.seen == nil {
		s.seen = make(map[[16]byte]int32)
	}
	s.seen[key] = int32(min(rec.Line, math.MaxInt32))
	return Valid, nil, 0
}

// key hashes a valid id, which fits s.id.
func (s *Screen) key(id string) [16]byte {
	if s.hash == nil {
		s.hash = fnv.New128a()
	}
	s.hash.Reset()
	n := copy(s.id[:], id)
	s.hash.Write(s.id[:n])
	s.hash.Sum(s.sum[:0])
	return s.sum
}

// MaxProblems is how many problems a Summary keeps; it counts the rest.
const MaxProblems = 1000

// maxProblemID bounds the id a Problem keeps. Only an id too long to be
// valid is cut.
const maxProblemID = 2 * uprof.MaxLen

// Summary counts the verdicts on a file's records and keeps the first
// MaxProblems invalid ids and repeats, in file order. The zero value is
// ready to use.
type Summary struct {
	Read, Valid, Invalid, Repeats int

	Problems []Problem
}

// Problem is an invalid id or a repeat, for the report.
type Problem struct {
	Line    int
	ID      string // the trimmed id cell; an over-long one is cut, and Reason says so
	Verdict Verdict
	Reason  string // why an Invalid id was refused
	// FirstLine is the line a Repeat's id was first seen on.
	FirstLine int
	// Null says the id was SQL NULL.
	Null bool
}

// String renders the problem for a person, quoting the id so that control
// characters in it cannot disturb a terminal or a log.
func (p Problem) String() string { return p.Format("line") }

// Format renders the problem as String does, counting in unit ("line" for
// a file, "row" for a query's rows). A NULL id reads "invalid id: NULL".
func (p Problem) Format(unit string) string {
	switch {
	case p.Verdict == Repeat:
		return fmt.Sprintf("%s %d: repeat of %s %d (%q)", unit, p.Line, unit, p.FirstLine, p.ID)
	case p.Null:
		return fmt.Sprintf("%s %d: invalid id: NULL", unit, p.Line)
	}
	return fmt.Sprintf("%s %d: invalid id %q: %s", unit, p.Line, p.ID, p.Reason)
}

// Add counts rec with the results of Screen.Check. It panics on a verdict
// other than Valid, Invalid or Repeat.
func (s *Summary) Add(rec Record, v Verdict, reason error, firstLine int) {
	switch v {
	case Valid:
		s.Valid++
	case Invalid:
		s.Invalid++
	case Repeat:
		s.Repeats++
	default:
		panic(fmt.Sprintf("source: Summary.Add with %v", v))
	}
	s.Read++
	if v == Valid || len(s.Problems) >= MaxProblems {
		return
	}

	p := Problem{Line: rec.Line, Verdict: v, FirstLine: firstLine, Null: rec.Null}
	if reason != nil {
		p.Reason = reason.Error()
	}
	id := rec.ID
	if len(id) > maxProblemID {
		id = id[:maxProblemID]
		p.Reason += fmt.Sprintf(" (id cut to its first %d of %d bytes)", maxProblemID, len(rec.ID))
	}

	// A copy, so that the problem does not pin the record's other fields,
	// which share the id's memory, for the length of the run.
	p.ID = strings.Clone(id)
	s.Problems = append(s.Problems, p)
}

// Omitted is the number of problems counted but not kept in Problems.
func (s *Summary) Omitted() int { return s.Invalid + s.Repeats - len(s.Problems) }
