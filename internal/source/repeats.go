package source

import (
	"hash/maphash"
	"math"
	"slices"

	"github.com/enrollq/enrollq/internal/uprof"
)

// Repeats finds the repeated ids of an input that can be read twice (a
// file), in far less memory than Screen: a first pass notes a 64-bit hash
// and the line of every valid id (12 bytes each, 12 MiB for a million
// rows), sorts them once, and keeps only the lines that repeat an earlier
// one. A second pass, through Check, then needs memory only for the
// repeats themselves.
//
// Two distinct ids with one hash cannot be mistaken for each other: the
// lines that share a hash form a group, and Check compares the ids within
// it.
//
// Use: Add every record of the first pass, Finish, then Check every record
// of the second pass in the same order. For a further pass over the same
// records, Rewind first. Not safe for concurrent use.
type Repeats struct {
	seed    maphash.Seed
	hashes  []uint64
	lines   []uint32
	groupOf map[uint32]int      // line -> group of lines sharing a hash
	groups  []map[string]uint32 // per group: id -> first line, filled by Check
	done    bool
}

// NewRepeats returns an empty Repeats.
func NewRepeats() *Repeats {
	return &Repeats{seed: maphash.MakeSeed()}
}

// Add notes a record of the first pass. Invalid ids are left out.
func (r *Repeats) Add(rec Record) {
	if uprof.Validate(rec.ID) != nil {
		return
	}
	r.hashes = append(r.hashes, maphash.String(r.seed, rec.ID))
	r.lines = append(r.lines, uint32(min(rec.Line, math.MaxUint32)))
}

// Finish sorts what Add noted and keeps only the repeats.
func (r *Repeats) Finish() {
	idx := make([]uint32, len(r.hashes))
	for i := range idx {
		idx[i] = uint32(i)
	}
	slices.SortFunc(idx, func(a, b uint32) int {
		if r.hashes[a] != r.hashes[b] {
			if r.hashes[a] < r.hashes[b] {
				return -1
			}
			return 1
		}
		return int(r.lines[a]) - int(r.lines[b])
	})
	r.groupOf = map[uint32]int{}
	for i := 1; i < len(idx); i++ {
		prev, cur := idx[i-1], idx[i]
		if r.hashes[prev] != r.hashes[cur] {
			continue
		}
		g, ok := r.groupOf[r.lines[prev]]
		if !ok {
			g = len(r.groups)
			r.groups = append(r.groups, map[string]uint32{})
			r.groupOf[r.lines[prev]] = g
		}
		r.groupOf[r.lines[cur]] = g
	}
	r.hashes, r.lines, r.done = nil, nil, true
}

// Rewind makes r ready for another pass over the same records: it forgets
// the ids Check has seen but keeps the repeats Finish found, so that Check
// of the same records in the same order gives the same verdicts again.
// Before Finish it does nothing.
func (r *Repeats) Rewind() {
	for _, g := range r.groups {
		clear(g)
	}
}

// Check returns rec's verdict in the second pass, as Screen.Check does.
// It panics if Finish was not called.
func (r *Repeats) Check(rec Record) (v Verdict, reason error, firstLine int) {
	if !r.done {
		panic("source: Repeats.Check before Finish")
	}
	if rec.Null {
		return Invalid, ErrNullID, 0
	}
	if err := uprof.Validate(rec.ID); err != nil {
		return Invalid, err, 0
	}
	line := uint32(min(rec.Line, math.MaxUint32))
	g, ok := r.groupOf[line]
	if !ok {
		return Valid, nil, 0
	}
	if first, ok := r.groups[g][rec.ID]; ok {
		return Repeat, nil, int(first)
	}
	r.groups[g][rec.ID] = line
	return Valid, nil, 0
}
