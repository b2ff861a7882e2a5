package sink

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
)

// ReadCreated reads a results file that File wrote and returns its
// created rows whose URL is still valid after now+minValidity, keyed by
// profile id, as results of campaignName. Other rows (failed, expired,
// pending, or a URL that would not live long enough) are left out. The
// passthrough columns are not read: the input holds them.
//
// A missing file is an error that wraps os.ErrNotExist; a file without the
// result columns is an error too, so that a file that is not a results
// file is never taken for one.
func ReadCreated(path, campaignName string, now time.Time, minValidity time.Duration) (map[string]campaign.Result, error) {
	format, err := FormatOf(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	rows := make(map[string]campaign.Result)
	keep := func(get func(string) string) error {
		if get("status") != string(campaign.StatusCreated) || get("enrollment_url") == "" {
			return nil
		}
		id := get("user_profile_id")
		exp, err := time.Parse(time.RFC3339, get("expires_at"))
		if err != nil {
			return fmt.Errorf("%s: expires_at %q: %w", id, get("expires_at"), err)
		}
		if !exp.After(now.Add(minValidity)) {
			return nil
		}
		attempts, err := strconv.ParseInt(get("attempts"), 10, 64)
		if err != nil {
			return fmt.Errorf("%s: attempts %q: %w", id, get("attempts"), err)
		}
		rows[id] = campaign.Result{
			Campaign: campaignName, ProfileID: id, Status: campaign.StatusCreated,
			URL: get("enrollment_url"), ExpiresAt: exp, RequestID: get("request_id"), Attempts: attempts,
		}
		return nil
	}
	if format == CSV {
		err = readCSVRows(f, keep)
	} else {
		err = readJSONLRows(f, keep)
	}
	if err != nil {
		return nil, fmt.Errorf("read results %s: %w", path, err)
	}
	return rows, nil
}

// CheckResults reports whether the file at path, when there is one, is a
// results file that File wrote: nil for a missing file or one with the
// result columns, an error wrapping ErrNotResults for any other, so that
// a writer never replaces a file that is not its own kind (a customer
// list named by mistake). Only the header (CSV) or first line (JSONL) is
// read.
func CheckResults(path string) error {
	format, err := FormatOf(path)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	first := func(func(string) string) error { return errFirstRow }
	if format == CSV {
		err = readCSVRows(f, first)
	} else {
		err = readJSONLRows(f, first)
	}
	if err == nil || errors.Is(err, errFirstRow) {
		return nil
	}
	if errors.Is(err, ErrNotResults) {
		return fmt.Errorf("%s: %w", path, err)
	}
	return fmt.Errorf("%s: %w: %w", path, ErrNotResults, err)
}

// errFirstRow stops CheckResults' read at the first row.
var errFirstRow = errors.New("first row")

// ErrNotResults is the error for a file that lacks the result columns.
var ErrNotResults = errors.New("not a results file: it lacks the columns " + strings.Join(Columns, ", "))

func readCSVRows(r io.Reader, each func(get func(string) string) error) error {
	cr := csv.NewReader(r)
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return ErrNotResults
	}
	if err != nil {
		return err
	}
	at := make(map[string]int, len(header))
	for i, h := range header {
		at[h] = i
	}
	for _, c := range Columns {
		if _, ok := at[c]; !ok {
			return ErrNotResults
		}
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := each(func(name string) string { return rec[at[name]] }); err != nil {
			return err
		}
	}
}

func readJSONLRows(r io.Reader, each func(get func(string) string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 64<<20)
	for line := 1; sc.Scan(); line++ {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		for _, c := range Columns {
			if _, ok := obj[c]; !ok {
				return fmt.Errorf("line %d: %w", line, ErrNotResults)
			}
		}
		get := func(name string) string {
			var s string
			if json.Unmarshal(obj[name], &s) == nil {
				return s
			}
			return string(obj[name]) // attempts is a number
		}
		if err := each(get); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
	return sc.Err()
}
