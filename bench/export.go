package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
)

// exportResult is cmd/export alone on a large finished campaign.
type exportResult struct {
	results int
	fill    time.Duration // storing the results, before the clock starts
	wall    time.Duration // the export process, start to exit
	rate    float64       // rows a second over wall
	usage   usage         // the exporter's CPU and peak RSS
	rows    int           // data rows in the file it wrote
}

// exportFillers is how many goroutines store the scenario's results.
const exportFillers = 32

// runExport stores cfg.ExportResults results of one campaign straight
// into Redis (as workers would, one Put each; no API call), then runs
// cmd/export over them into a CSV file and counts its rows.
func (b *bench) runExport(ctx context.Context) (exportResult, error) {
	res := exportResult{results: b.cfg.ExportResults}
	n := b.names(scExport)
	store := campaign.NewStore(b.rdb, time.Hour)

	start := time.Now()
	if err := fillCampaign(ctx, store, n.campaign, res.results); err != nil {
		return res, err
	}
	res.fill = time.Since(start)
	b.logf("%s: %d results stored in %s", scExport, res.results, res.fill.Round(time.Millisecond))

	out := filepath.Join(b.dir, scExport+".csv")
	defer os.Remove(out)
	var err error
	res.wall, res.usage, err = b.runAlone(ctx, scExport, "export", b.bin.export, res.results,
		"--campaign", n.campaign, "--out", out)
	if err != nil {
		return res, err
	}
	res.rate = float64(res.results) / res.wall.Seconds()
	if res.rows, err = dataRows(out); err != nil {
		return res, err
	}
	if res.rows != res.results {
		return res, fmt.Errorf("export wrote %d rows for %d results", res.rows, res.results)
	}
	return res, b.flush(ctx)
}

// fillCampaign admits n profiles into campaign and stores a created
// result for each, in an order unlike the input's (from both ends), so
// that the export has to put them back in order.
func fillCampaign(ctx context.Context, store *campaign.Store, name string, n int) error {
	if _, err := store.SetColumns(ctx, name, []string{"email"}); err != nil {
		return err
	}
	const batch = 1000
	ids := make([]string, 0, batch)
	for i := range n {
		ids = append(ids, profileID(i))
		if len(ids) == batch || i == n-1 {
			if _, err := store.Admit(ctx, name, ids); err != nil {
				return err
			}
			ids = ids[:0]
		}
	}

	expires := time.Now().Add(time.Hour)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, exportFillers)
	for range exportFillers {
		wg.Go(func() {
			for {
				k := int(next.Add(1)) - 1
				if k >= n || ctx.Err() != nil {
					return
				}
				i := k / 2 // 0, n-1, 1, n-2, ...
				if k%2 == 1 {
					i = n - 1 - k/2
				}
				r := campaign.Result{Campaign: name, ProfileID: profileID(i), Seq: int64(i + 2),
					Columns: map[string]string{"email": email(i)}, Status: campaign.StatusCreated,
					URL: "https://claude.ai/enroll/bench" + profileID(i), ExpiresAt: expires,
					RequestID: "req_bench", Attempts: 1, FinishedAt: time.Now()}
				if _, err := store.Put(ctx, r); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when none
}

// dataRows counts the data rows of the CSV file the export wrote, and
// checks that they are in input order: the bench's profile ids rise with
// the input's line.
func dataRows(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	rows, last := -1, "" // the header is not a row
	for sc.Scan() {
		rows++
		if rows == 0 {
			continue
		}
		line := sc.Text()
		at := strings.Index(line, profileIDPrefix)
		if at < 0 {
			return rows, fmt.Errorf("%s, row %d: no profile id of the bench", path, rows)
		}
		id := line[at : at+len(profileID(0))]
		if id <= last {
			return rows, fmt.Errorf("%s, row %d: %s after %s, out of input order", path, rows, id, last)
		}
		last = id
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return max(rows, 0), nil
}
