package source_test

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/enrollq/enrollq/internal/source"
)

// A bulk job reads the file once, sending valid ids and reporting the rest.
func Example() {
	file := "\uFEFFUser_Profile_ID ,Email\r\n" +
		"uprof_01Hq3T9cVbW2mXy7LpZ4sQ8e,ana@example.com\r\n" +
		"\r\n" +
		"uprof_01Hq3T9cVbW2mXy7LpZ4sQ8e,ana+dup@example.com\r\n" +
		"uprof_,short@example.com\r\n"

	c, err := source.NewCSV(strings.NewReader(file), source.CSVConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("columns:", c.Columns())

	var screen source.Screen
	var sum source.Summary
	for {
		rec, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Println(err) // a *LineError: the file needs fixing
			return
		}
		v, reason, first := screen.Check(rec)
		sum.Add(rec, v, reason, first)
		if v == source.Valid {
			fmt.Println("send", rec.ID, rec.Values)
		}
	}

	fmt.Printf("read %d: %d valid, %d invalid, %d repeats\n", sum.Read, sum.Valid, sum.Invalid, sum.Repeats)
	for _, p := range sum.Problems {
		fmt.Println(p)
	}
	// Output:
	// columns: [email]
	// send uprof_01Hq3T9cVbW2mXy7LpZ4sQ8e [ana@example.com]
	// read 3: 1 valid, 1 invalid, 1 repeats
	// line 4: repeat of line 2 ("uprof_01Hq3T9cVbW2mXy7LpZ4sQ8e")
	// line 5: invalid id "uprof_": id is only the prefix uprof_
}
