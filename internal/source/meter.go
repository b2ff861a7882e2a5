package source

import (
	"errors"
	"io"
)

// errFull is what the meter gives the parser once a record has taken all
// the bytes it may; CSV reports it as ErrRecordTooLarge.
var errFull = errors.New("record byte limit reached")

// meter sits between the input and the CSV parser's buffer. It finds the
// offset and line each record starts on, and stops handing over bytes once
// a record has had one more than max of them, so that a file without line
// breaks, or with a quote never closed, cannot make the parser buffer the
// whole of it. Whether a record that got through is too large is decided
// by over, once the parser is done with it, so the answer does not depend
// on how the input arrived.
//
// It relies on how the parser reads: a record ends at a line break, and
// the parser asks for more input only while the line it is reading is
// unfinished. So when Read is called, every byte handed over since the
// start of the current record belongs to that record.
type meter struct {
	r   io.Reader
	max int64
	err error // the first error from r, or errFull; returned from then on

	off int64 // bytes handed over

	// While seeking, the meter is skipping the blank lines before a record
	// ("\n" or "\r\n", as the parser skips them), cr noting a '\r' at the
	// start of a line, and line is the line being looked at. Once the
	// record's first byte has been handed over, start is its offset and
	// line the line it starts on.
	seeking bool
	cr      bool
	start   int64
	line    int

	// armed is false until the first call to next: until then the meter
	// only counts, so that a byte order mark can be looked at and dropped
	// without being taken for the start of the header.
	armed bool
}

func newMeter(r io.Reader, max int64) *meter {
	return &meter{r: r, max: max, line: 1}
}

func (m *meter) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if m.armed && !m.seeking {
		room := m.max + 1 - (m.off - m.start)
		if room <= 0 {
			m.err = errFull
			return 0, m.err
		}
		if int64(len(p)) > room {
			p = p[:room]
		}
	}

	n, err := m.r.Read(p)
	if m.armed && m.seeking {
		m.seek(p[:n], m.off)
	}
	m.off += int64(n)
	if err != nil {
		m.err = err
	}
	return n, err
}

// next tells the meter that the parser is about to read a record, any
// earlier one being done, and looks for the record's start in pending, the
// bytes handed over but not parsed yet, which start on line.
func (m *meter) next(pending []byte, line int) {
	m.armed, m.seeking, m.cr = true, true, false
	m.line = line
	m.seek(pending, m.off-int64(len(pending)))
}

// seek looks through p, which starts at offset base, for the first byte of
// a record.
func (m *meter) seek(p []byte, base int64) {
	for i, c := range p {
		switch {
		case c == '\n':
			m.line++
			m.cr = false
		case c == '\r' && !m.cr:
			m.cr = true
		default:
			m.seeking = false
			m.start = base + int64(i)
			if m.cr {
				m.start-- // the record starts with that '\r'
			}
			return
		}
	}
}

// over reports whether the record the parser last worked on is longer
// than max, given consumed, the offset up to which the parser has taken
// input.
func (m *meter) over(consumed int64) bool {
	return m.err == errFull || !m.seeking && consumed-m.start > m.max
}
