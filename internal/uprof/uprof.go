// Package uprof validates Anthropic user profile ids before anything is sent.
//
// A user profile id is "uprof_" followed by one or more ASCII letters and
// digits. Anything else (an empty cell, a bare prefix, a slash, a path
// traversal, a prefix in the wrong case, a number mangled by a spreadsheet)
// is refused here, so that it never becomes part of a request path.
package uprof

import (
	"errors"
	"strings"
)

// Prefix starts every user profile id.
const Prefix = "uprof_"

// MaxLen bounds an id's length; real ids are about 30 characters.
const MaxLen = 128

// Validation errors. Each says why an id was refused; callers report them
// next to the line or row the id came from.
var (
	ErrEmpty       = errors.New("empty id")
	ErrPrefixOnly  = errors.New("id is only the prefix " + Prefix)
	ErrPrefixCase  = errors.New("id prefix must be lowercase " + Prefix)
	ErrNoPrefix    = errors.New("id must start with " + Prefix)
	ErrCharacter   = errors.New("id may hold only letters and digits after " + Prefix)
	ErrTooLong     = errors.New("id is longer than 128 characters")
	ErrSpreadsheet = errors.New("id looks like a number Excel converted (1.23E+18, 1230000000000000000): the original id is lost; export the ids again with the column formatted as text")
)

// Validate reports whether id is a well-formed user profile id. It does not
// trim: callers trim the cell first, so that the id they store is the id
// they validated.
func Validate(id string) error {
	switch {
	case id == "":
		return ErrEmpty
	case len(id) > MaxLen:
		return ErrTooLong
	case id == Prefix:
		return ErrPrefixOnly
	case !strings.HasPrefix(id, Prefix):
		if len(id) >= len(Prefix) && strings.EqualFold(id[:len(Prefix)], Prefix) {
			return ErrPrefixCase
		}
		if looksNumeric(id) {
			return ErrSpreadsheet
		}
		return ErrNoPrefix
	}
	for i := len(Prefix); i < len(id); i++ {
		if !isAlnum(id[i]) {
			return ErrCharacter
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// looksNumeric matches what a spreadsheet makes of a long id it took for a
// number: digits, a decimal point, an exponent ("1.23E+18").
func looksNumeric(s string) bool {
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			digits++
		case c == '.' || c == 'E' || c == 'e' || c == '+' || c == '-' || c == ',':
		default:
			return false
		}
	}
	return digits > 0
}
