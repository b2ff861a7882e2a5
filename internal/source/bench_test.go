package source

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// BenchmarkCSV reads a generated file of 100,000 profiles, shaped like
// profiles-25.csv, with and without screening.
func BenchmarkCSV(b *testing.B) {
	input := generate(100_000)
	for _, screen := range []bool{false, true} {
		b.Run(fmt.Sprintf("screen=%t", screen), func(b *testing.B) {
			b.SetBytes(int64(len(input)))
			b.ReportAllocs()
			for b.Loop() {
				c, err := NewCSV(bytes.NewReader(input), CSVConfig{})
				if err != nil {
					b.Fatal(err)
				}
				var s Screen
				var sum Summary
				for {
					rec, err := c.Next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					if screen {
						v, reason, first := s.Check(rec)
						sum.Add(rec, v, reason, first)
					}
				}
				if screen && sum.Valid != 100_000 {
					b.Fatalf("got %d valid ids, want 100000", sum.Valid)
				}
			}
		})
	}
}

// BenchmarkScreenMemory screens a million distinct ids and reports the heap
// the Screen holds afterwards.
func BenchmarkScreenMemory(b *testing.B) {
	const n = 1_000_000
	ids := make([]string, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range ids {
		ids[i] = randomID(rng)
	}
	b.ReportAllocs()
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)

		var s Screen
		for i, id := range ids {
			s.Check(Record{Line: i + 2, ID: id})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB/1e6-ids")
		runtime.KeepAlive(&s)
	}
}

// generate writes a CSV of n profiles with distinct ids, the same for the
// same n.
func generate(n int) []byte {
	names := []string{"Ada", "José", "Zoë", "Łukasz", "Søren", "Ngọc", "Aoife", "Chen Wei", "Priya", "Björk"}
	locales := []string{"en-US", "es-ES", "fr-FR", "de-DE", "pl-PL", "ja-JP", "pt-BR", "vi-VN"}
	rng := rand.New(rand.NewPCG(1, 1))

	var b bytes.Buffer
	b.WriteString("user_profile_id,email,first_name,locale\n")
	for i := range n {
		name := names[rng.IntN(len(names))]
		first := name
		if strings.Contains(name, " ") {
			first = `"` + name + `"`
		}
		fmt.Fprintf(&b, "%s,user.%d@example.com,%s,%s\n", randomID(rng), i+1, first, locales[rng.IntN(len(locales))])
	}
	return b.Bytes()
}

// randomID returns an id shaped like a real one; 22 random base62
// characters make a clash between a million of them vanishingly unlikely.
func randomID(rng *rand.Rand) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	id := []byte("uprof_01")
	for range 22 {
		id = append(id, alphabet[rng.IntN(len(alphabet))])
	}
	return string(id)
}
