package client

import "testing"

func TestMediaType(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"application/json":                 "application/json",
		"application/json; charset=utf-8":  "application/json",
		" Application/JSON ;charset=UTF-8": "application/json",
		"text/html; charset=utf-8":         "text/html",
		"":                                 "",
	} {
		if got := mediaType(in); got != want {
			t.Errorf("mediaType(%q) = %q, want %q", in, got, want)
		}
	}
}
