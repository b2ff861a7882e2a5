package client

import (
	"fmt"
	"log/slog"
)

// Secret holds a bearer URL: whoever has it can use it until it expires.
// It prints and logs as a placeholder; Reveal returns the value for the one
// place that must store it.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string   { return redacted }
func (s Secret) GoString() string { return redacted }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON keeps encoding/json (and slog's JSON handler) from printing
// the value; storage code writes Reveal() explicitly.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// Format keeps %v, %s, %q and %#v from printing the value.
func (s Secret) Format(f fmt.State, _ rune) { fmt.Fprint(f, redacted) }
