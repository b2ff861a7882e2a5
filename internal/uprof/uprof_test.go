package uprof

import (
	"errors"
	"testing"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		want error
	}{
		{"uprof_01Hq3T9cVbW2mXy7LpZ4sQ8e", nil},
		{"uprof_a", nil},
		{"", ErrEmpty},
		{"uprof_", ErrPrefixOnly},
		{"../../v1/messages", ErrNoPrefix},
		{"uprof_01Ab/../../x", ErrCharacter},
		{"UPROF_01Gg4Hh5Jj6Kk7Ll8Mm9Nn0P", ErrPrefixCase},
		{"Uprof_01", ErrPrefixCase},
		{"1.23E+18", ErrSpreadsheet},
		{"123456789012", ErrSpreadsheet},
		{"1230000000000000000", ErrSpreadsheet},
		{"1,23E+18", ErrSpreadsheet},
		{"1.23e18", ErrSpreadsheet},
		{"uprof_01 x", ErrCharacter},
		{"uprof_01%2F", ErrCharacter},
		{"uprof_01é", ErrCharacter},
		{"uprof_" + string(make([]byte, 200)), ErrTooLong},
	}
	for _, tt := range tests {
		if got := Validate(tt.id); !errors.Is(got, tt.want) {
			t.Errorf("Validate(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}
