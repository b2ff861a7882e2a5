package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/producer"
	"github.com/enrollq/enrollq/internal/sink"
	"github.com/enrollq/enrollq/internal/source"
)

const (
	pollInterval = 200 * time.Millisecond
	exportBatch  = 500
)

// campaignRun is one run of enqueue over one input file: checked, then
// enqueued, followed, and written out, each a pass over the file.
type campaignRun struct {
	cfg     config
	rdb     redis.UniversalClient
	store   *campaign.Store
	stdout  io.Writer
	log     *slog.Logger
	path    string // the input, spooled when it is standard input or a query
	cleanup func()
	repeats *source.Repeats
	out     *sink.File // nil without --out
	columns []string   // the input's passthrough columns, with --out
	// prior: the live URLs of an existing --out, which local mode keeps.
	prior   map[string]campaign.Result
	rows    int // records in the input, for the progress bar
	carried int // local mode: results kept from an existing --out
	sum     producer.Summary
}

// prepare reads the whole input once, checking its structure and finding
// its repeats, and creates the output file, so that a broken file or an
// unwritable --out fails before anything is enqueued.
func prepare(ctx context.Context, cfg config, rdb redis.UniversalClient, stdin io.Reader, stdout io.Writer, log *slog.Logger) (*campaignRun, error) {
	path, cleanup, err := inputFile(ctx, cfg.csvPath, stdin)
	if cfg.dbURL != "" {
		path, cleanup, err = querySpool(ctx, cfg, log)
	}
	if err != nil {
		return nil, err
	}
	r := &campaignRun{
		cfg: cfg, rdb: rdb, store: campaign.NewStore(rdb, 0), stdout: stdout, log: log,
		path: path, cleanup: cleanup, repeats: source.NewRepeats(),
	}

	recs, closeFile, err := r.open()
	if err != nil {
		r.close()
		return nil, err
	}
	check, checked := r.newProgress("checking", "rows", -1), int64(0)
	r.rows, err = producer.Validate(recs, func(rec source.Record) {
		r.repeats.Add(rec)
		if checked++; checked%1000 == 0 {
			check.set(checked, "")
		}
	})
	check.finish()
	closeFile()
	if err != nil {
		r.close()
		return nil, fmt.Errorf("%s: %w (nothing was enqueued)", cfg.inputName(), err)
	}
	r.repeats.Finish()

	if cfg.out != "" {
		// The lock first: the rows carried over are then the last that
		// another run wrote, not a checkpoint it was about to replace.
		r.columns = recs.Columns()
		if r.out, err = sink.Create(cfg.out, r.columns); err != nil {
			r.close()
			return nil, fmt.Errorf("--out: %w (nothing was enqueued)", err)
		}
		if r.prior, err = readExistingOut(cfg.out, cfg.campaign); err != nil {
			r.close()
			return nil, err
		}
	}
	return r, nil
}

// pass reads the whole input once more, handing each record to each.
func (r *campaignRun) pass(each func(source.Record)) (int, error) {
	recs, closeFile, err := r.open()
	if err != nil {
		return 0, err
	}
	defer closeFile()
	return producer.Validate(recs, each)
}

// open starts a pass over the input: the CSV file, or the query's spool.
func (r *campaignRun) open() (producer.Records, func(), error) {
	f, err := os.Open(r.path)
	if err != nil {
		return nil, nil, fmt.Errorf("open input: %w", err)
	}
	var recs producer.Records
	if r.cfg.dbURL != "" {
		recs, err = source.OpenSpool(f)
	} else {
		recs, err = source.NewCSV(f, source.CSVConfig{IDColumn: r.cfg.idColumn, Comma: r.cfg.comma})
	}
	if err != nil {
		f.Close()
		err = fmt.Errorf("%s: %w (nothing was enqueued)", r.cfg.inputName(), err)
		if r.cfg.idSet && errors.Is(err, source.ErrNoIDColumn) {
			// The input may be right and the flag wrong: exit 2, as for
			// any flag.
			err = usageError{fmt.Errorf("--id-column: %w", err)}
		}
		return nil, nil, err
	}
	return recs, func() { f.Close() }, nil
}

func (r *campaignRun) close() {
	if r.out != nil {
		r.out.Abort() // a no-op after Commit
	}
	r.cleanup()
}

// enqueue is the second pass: screen and enqueue every record, then print
// the summary.
func (r *campaignRun) enqueue(ctx context.Context) error {
	recs, closeFile, err := r.open()
	if err != nil {
		return err
	}
	defer closeFile()
	pc := producer.Config{
		Redis: r.rdb, Queue: r.cfg.queue, Campaign: r.cfg.campaign, Screen: r.repeats,
		Concurrency: r.cfg.concurrency, MaxRetry: r.cfg.maxRetry, Logger: r.log,
	}
	if r.cfg.deadline > 0 {
		pc.Deadline = time.Now().Add(r.cfg.deadline)
	}
	bar := r.newProgress("enqueue", "rows", int64(r.rows))
	pc.Progress = func(read int64) { bar.set(read, "") }
	r.sum, err = producer.Enqueue(ctx, pc, recs)
	bar.finish()
	var conflict *campaign.QueueConflictError
	if errors.As(err, &conflict) {
		return queueConflict(conflict)
	}
	printSummary(r.stdout, r.cfg.campaign, r.cfg.inputUnit(), r.sum)
	if r.carried > 0 {
		fmt.Fprintf(r.stdout, "  (of the already enqueued, %d were carried over from the existing %s: their URLs are kept, no call)\n", r.carried, r.cfg.out)
	}
	if err != nil {
		return fmt.Errorf("enqueue stopped after %d rows: %w", r.sum.Read, err)
	}
	if r.sum.Valid > 0 {
		printExpiryEstimate(r.stdout, r.sum, r.cfg)
	}
	return nil
}

// checkQueue refuses a fleet run that would put the campaign on a second
// queue, before the input is read; the producer's claim of the queue is
// the check that holds against a concurrent run.
func checkQueue(ctx context.Context, cfg config, store *campaign.Store) error {
	on, err := store.Queue(ctx, cfg.campaign)
	if err != nil || on == "" || on == cfg.queue {
		return err
	}
	prog, err := store.Progress(ctx, cfg.campaign)
	if err != nil || prog.Total == 0 {
		return err // no profile yet: the campaign may move
	}
	return queueConflict(&campaign.QueueConflictError{Campaign: cfg.campaign, Queue: on, Other: cfg.queue})
}

// queueConflict is the usage error for a campaign given another --queue
// than its own.
func queueConflict(e *campaign.QueueConflictError) error {
	return usageError{fmt.Errorf("--queue %s: %w (nothing was enqueued); give --queue %s, or name another --campaign", e.Other, e, e.Queue)}
}

// noneValid fails a run whose input held rows but no valid profile: almost
// always the wrong file or the wrong --id-column. An input without rows
// is no failure.
func (r *campaignRun) noneValid() error {
	switch {
	case r.sum.Read == 0:
		// A quiet day for a cron run, not a fault.
		fmt.Fprintf(r.stdout, "%s holds no rows: nothing to do", r.cfg.inputName())
		if r.cfg.out != "" {
			fmt.Fprintf(r.stdout, " (%s left as it was)", r.cfg.out)
		}
		fmt.Fprintln(r.stdout)
		return nil
	case r.sum.Valid == 0 && r.cfg.idColumn == "":
		return fmt.Errorf("%s holds no valid profile id (the id column is the query's first; pick another with --id-column)", r.cfg.inputName())
	case r.sum.Valid == 0:
		return fmt.Errorf("%s holds no valid profile id (check --id-column %q)", r.cfg.inputName(), r.cfg.idColumn)
	}
	return nil
}

// printSummary reports the run; unit is what problems count ("line").
func printSummary(w io.Writer, name, unit string, s producer.Summary) {
	for _, p := range s.Problems {
		fmt.Fprintln(w, p.Format(unit))
	}
	if more := s.Invalid + s.Repeats - len(s.Problems); more > 0 {
		fmt.Fprintf(w, "(%d more problems not listed)\n", more)
	}
	fmt.Fprintf(w, "campaign %s\n", name)
	fmt.Fprintf(w, "  rows read         %d\n", s.Read)
	fmt.Fprintf(w, "  enqueued          %d\n", s.Enqueued)
	fmt.Fprintf(w, "  already enqueued  %d\n", s.AlreadyEnqueued)
	if s.Reminted > 0 {
		fmt.Fprintf(w, "  (of the enqueued, %d had a URL that expires within %s: minted again)\n", s.Reminted, campaign.RemintBefore)
	}
	fmt.Fprintf(w, "  repeats           %d\n", s.Repeats)
	fmt.Fprintf(w, "  invalid           %d\n", s.Invalid)
	if s.Unsent > 0 {
		fmt.Fprintf(w, "  not enqueued      %d (the run stopped; run it again to enqueue them)\n", s.Unsent)
	}
}

// urlLifetime is how long a minted URL is taken to live when nothing else
// says: about an hour, by the API's documentation.
const urlLifetime = time.Hour

// printExpiryEstimate estimates how long minting the enqueued profiles
// takes at the campaign's rate, and warns when the first URLs would expire,
// or come within campaign.RemintBefore of it, before the last are minted.
// Local mode knows its rate (--rate); in fleet mode the workers' --rate
// decides, so the estimate is made only when --rate is given here too.
func printExpiryEstimate(w io.Writer, s producer.Summary, cfg config) {
	rate := cfg.rate
	if cfg.redisURL != "" && !cfg.rateSet {
		rate = 0
	}
	lifetime := urlLifetime
	if cfg.sandbox && cfg.sbTTL > 0 {
		lifetime = cfg.sbTTL
	}
	if msg := expiryWarning(s.Enqueued, rate, lifetime, cfg.campaign, cfg.redisURL == ""); msg != "" {
		fmt.Fprint(w, msg)
	}
}

// expiryWarning is printExpiryEstimate's text for n profiles minted at
// rate calls a second, whose URLs live lifetime; "" when they all fit. A
// local run's advice is what a local run can do: its Redis is gone when it
// ends, so there is no campaign left to refresh or export, but running the
// same command again mints again the links of its --out that are due.
func expiryWarning(n int64, rate float64, lifetime time.Duration, name string, local bool) string {
	if rate <= 0 || n == 0 {
		return ""
	}
	eta := time.Duration(float64(n) / rate * float64(time.Second))
	margin := campaign.RemintBefore
	if lifetime < 2*margin {
		margin = 0 // short-lived links (a test sandbox): only death counts
	}
	if eta+margin <= lifetime {
		return ""
	}
	expire := "expire"
	if margin > 0 {
		expire = fmt.Sprintf("expire (or have under %s left)", margin)
	}
	shown := eta.Round(time.Second)
	if eta < time.Minute {
		shown = eta.Round(100 * time.Millisecond)
	}
	refresh := fmt.Sprintf("enqueue --refresh --campaign %s --within %s, then export --campaign %s --out FILE",
		name, DefaultRefreshWithin, name)
	if local {
		refresh = fmt.Sprintf("run the same command again, which mints again the links of --out that have under %s left", campaign.RemintBefore)
	}
	return fmt.Sprintf("warning: %d profiles at %.4g calls/s take about %s, but a URL lives about %s: "+
		"the first URLs %s before the last are minted.\n"+
		"  mail each result as it comes (a webhook sink), or send in smaller waves (split the input, at most %d profiles a wave), "+
		"or refresh before sending: %s\n",
		n, rate, shown, lifetime, expire, int64(rate*(lifetime-margin).Seconds()), refresh)
}

// newProgress shows a stage's progress: a bar on a terminal, lines on
// standard output otherwise.
func (r *campaignRun) newProgress(label, unit string, total int64) *progress {
	return newProgress(r.cfg.progressOut, r.stdout, label, unit, total)
}

// follow polls the campaign until every profile has a result, showing its
// progress. In local mode a paused queue ends the run (nobody else would
// resume it); in fleet mode it is reported and waited out, as is a queue
// no worker serves.
func (r *campaignRun) follow(ctx context.Context, local bool) error {
	insp := asynq.NewInspectorFromRedisClient(r.rdb)
	defer insp.Close()

	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var bar *progress
	defer func() {
		if bar != nil {
			bar.finish()
		}
	}()
	lastCheck := time.Now() // workers may take a heartbeat to show up
	lastSave := time.Now()
	var (
		notes fleetNotes
		prog  campaign.Progress
	)
	for {
		next, err := r.store.Progress(ctx, r.cfg.campaign)
		if err != nil {
			if ctx.Err() != nil {
				// Stopped while the read was out: an interruption like any
				// other (finish counts what the file holds).
				return &interruptedError{done: prog.Done(), total: prog.Total, err: ctx.Err()}
			}
			return err
		}
		prog = next
		if bar == nil {
			bar = r.newProgress("minting", "profiles", prog.Total)
		}
		detail := fmt.Sprintf("%d failed", prog.Failed)
		if notes.orphaned > 0 {
			detail += fmt.Sprintf(", %d held by a stopped worker", notes.orphaned)
		}
		bar.set(prog.Done(), detail)
		if prog.Pending() == 0 {
			return nil
		}
		if !local && time.Since(lastCheck) > fleetCheckEvery {
			lastCheck = time.Now()
			notes.check(insp, r.cfg.queue, bar)
			if n := notes.checkStranded(insp, r.cfg.queue, prog.Pending()); n > 0 {
				return strandedError{n: n, queue: r.cfg.queue}
			}
		}
		if local && r.out != nil && r.cfg.checkpoint > 0 && time.Since(lastSave) >= r.cfg.checkpoint {
			r.checkpoint(ctx)
			lastSave = time.Now()
		}
		if local {
			if qi, err := insp.GetQueueInfo(r.cfg.queue); err == nil && qi.Paused {
				return fmt.Errorf("the API refused the account (key, billing, permission or spend limit; see the log above) and the run stopped; %d of %d profiles have no result", prog.Pending(), prog.Total)
			}
		}
		select {
		case <-ctx.Done():
			return &interruptedError{done: prog.Done(), total: prog.Total, err: ctx.Err()}
		case <-tick.C:
		}
	}
}

// interruptedError ends a run stopped by a signal. Its counts are the
// campaign's when follow returns; finish replaces them with those of the
// file it writes, which holds the calls that were in flight too.
type interruptedError struct {
	done, total int64
	err         error
}

func (e *interruptedError) Error() string {
	return fmt.Sprintf("interrupted: %d of %d profiles done: %v", e.done, e.total, e.err)
}

func (e *interruptedError) Unwrap() error { return e.err }

// fleetCheckEvery is how often a fleet run checks why nothing may move: a
// paused queue, or no worker.
const fleetCheckEvery = 5 * time.Second

// fleetNotes says, once each time it changes, why a fleet campaign does
// not move, or moves slower than its rate says: a paused queue, no worker,
// or tasks that a stopped worker left active.
type fleetNotes struct {
	paused, unserved bool
	orphaned         int
	idleChecks       int // checks in a row that found pending profiles and no task to run
}

// strandedAfter is how many checks in a row must find profiles pending
// and the queue without a task to run before --wait takes it that they
// have none: the enqueue of a run still going (this run's own, or
// another's) puts tasks on the queue within that time.
const strandedAfter = 3

// checkStranded returns the campaign's pending profiles once they can
// have no task, the queue having none left to run check after check, and
// else 0.
func (n *fleetNotes) checkStranded(insp queueInspector, queue string, pending int64) int64 {
	qi, err := insp.GetQueueInfo(queue)
	if err != nil || pending == 0 || toRun(qi) > 0 {
		n.idleChecks = 0
		return 0
	}
	if n.idleChecks++; n.idleChecks < strandedAfter {
		return 0
	}
	return pending
}

// strandedError ends a --wait whose campaign has profiles that no task
// will ever run: waiting longer would wait for good.
type strandedError struct {
	n     int64
	queue string
}

func (e strandedError) Error() string {
	return strandedNote(e.n, e.queue) + " (--wait stopped waiting)"
}

// queueInspector is what fleetNotes reads of the queue. *asynq.Inspector
// is one.
type queueInspector interface {
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
	Servers() ([]*asynq.ServerInfo, error)
	ListActiveTasks(queue string, opts ...asynq.ListOption) ([]*asynq.TaskInfo, error)
}

var _ queueInspector = (*asynq.Inspector)(nil)

// maxActiveListed bounds the active tasks read to find orphaned ones.
const maxActiveListed = 1000

func (n *fleetNotes) check(insp queueInspector, queue string, bar *progress) {
	qi, err := insp.GetQueueInfo(queue)
	paused := err == nil && qi.Paused
	if paused && !n.paused {
		bar.note(fmt.Sprintf("queue %q is paused: fix the fault the workers logged, then run: enqueue --resume --queue %s", queue, queue))
	}
	if !paused && n.paused {
		bar.note(fmt.Sprintf("queue %q resumed", queue))
	}
	unserved := !servedBySomeWorker(insp, queue)
	if unserved && !n.unserved {
		bar.note(fmt.Sprintf("no worker serves queue %q: start cmd/worker --queue %s with the same Redis", queue, queue))
	}
	n.paused, n.unserved = paused, unserved

	orphaned := 0
	if err == nil && qi.Active > 0 {
		orphaned = orphanedTasks(insp, queue, min(qi.Active, maxActiveListed))
	}
	switch {
	case orphaned > n.orphaned:
		bar.note(fmt.Sprintf("%d tasks of queue %q were left running by a worker that stopped (killed, or cut off from Redis): "+
			"nothing is lost, but the time left shown does not count them; a running worker puts them back in the queue "+
			"about 1-2 minutes after the stop", orphaned, queue))
	case orphaned == 0 && n.orphaned > 0:
		bar.note(fmt.Sprintf("the tasks a stopped worker left are back in queue %q", queue))
	}
	n.orphaned = orphaned
}

// orphanedTasks counts the queue's active tasks whose lease has expired:
// their worker stopped without giving them back.
func orphanedTasks(insp queueInspector, queue string, active int) int {
	tasks, err := insp.ListActiveTasks(queue, asynq.PageSize(active))
	if err != nil {
		return 0 // unknown: do not cry wolf
	}
	n := 0
	for _, t := range tasks {
		if t.IsOrphaned {
			n++
		}
	}
	return n
}

func servedBySomeWorker(insp queueInspector, queue string) bool {
	servers, err := insp.Servers()
	if err != nil {
		return true // unknown: do not cry wolf
	}
	for _, s := range servers {
		if _, ok := s.Queues[queue]; ok {
			return true
		}
	}
	return false
}

// finish writes --out (even after an interruption: what is done is kept)
// and says how the run ended.
func (r *campaignRun) finish(ctx context.Context, runErr error) error {
	if r.out == nil || (runErr == nil && r.sum.Valid == 0) {
		// With no valid profile, --out is left as it was: an empty input
		// must not wipe the links of an earlier run.
		if runErr != nil {
			return runErr
		}
		return r.noneValid()
	}
	// The run's context may be cancelled (Ctrl-C); the export still runs.
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if err := r.export(ectx, r.out); err != nil {
		return errors.Join(runErr, err)
	}
	c := r.out.Counts()
	fmt.Fprintf(r.stdout, "wrote %d rows to %s: %d created, %d failed, %d expired, %d pending\n",
		c.Rows, r.cfg.out, c.Created, c.Failed, c.Expired, c.Pending)
	if c.Created > 0 {
		fmt.Fprintf(r.stdout, "the first link expires at %s (in %s): send them before then\n",
			c.FirstExpiry.UTC().Format(time.RFC3339), time.Until(c.FirstExpiry).Round(time.Minute))
	}
	var ie *interruptedError
	if errors.As(runErr, &ie) {
		ie.done, ie.total = int64(c.Rows-c.Pending), int64(c.Rows)
	}
	switch {
	case runErr != nil:
		return runErr
	case c.Failed+c.Expired+c.Pending > 0:
		return errSomeFailed{int64(c.Failed + c.Expired + c.Pending)}
	}
	return r.noneValid()
}

// export is the last pass: each valid profile of the input, in input order,
// with the input's columns and the campaign's result.
func (r *campaignRun) export(ctx context.Context, out *sink.File) error {
	recs, closeFile, err := r.open()
	if err != nil {
		return err
	}
	defer closeFile()
	r.repeats.Rewind()

	batch := make([]source.Record, 0, exportBatch)
	flush := func() error {
		ids := make([]string, len(batch))
		for i, rec := range batch {
			ids[i] = rec.ID
		}
		results, ok, err := r.store.GetMany(ctx, r.cfg.campaign, ids)
		if err != nil {
			return err
		}
		for i, rec := range batch {
			res := campaign.Result{}
			if ok[i] {
				res = results[i]
			}
			if err := out.Write(rec.Values, res, rec.ID); err != nil {
				return fmt.Errorf("write %s: %w", r.cfg.out, err)
			}
		}
		batch = batch[:0]
		return nil
	}
	for {
		rec, err := recs.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if v, _, _ := r.repeats.Check(rec); v != source.Valid {
			continue
		}
		if batch = append(batch, rec); len(batch) == exportBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return out.Commit()
}

// checkpoint writes --out as it stands, the rest pending, so that a local
// run that is killed (or cannot write at its end) leaves the URLs minted
// so far for the next run to carry over. A failure is logged, not fatal:
// the final write is the one that counts.
func (r *campaignRun) checkpoint(ctx context.Context) {
	out, err := r.out.Sibling()
	if err == nil {
		err = r.export(ctx, out)
	}
	if err != nil {
		if out != nil {
			out.Abort()
		}
		r.log.Warn("checkpoint of --out failed; the run goes on", "out", r.cfg.out, "error", err)
		return
	}
	r.log.Debug("checkpoint written", "out", r.cfg.out, "rows", out.Counts().Rows)
}

// inputFile returns a path to read three times: the file itself, or
// standard input spooled to a private temporary file. Ctrl-C stops the
// spooling and removes the spool.
func inputFile(ctx context.Context, path string, stdin io.Reader) (string, func(), error) {
	if path != "-" {
		return path, func() {}, nil
	}
	f, err := os.CreateTemp("", "enrollq-stdin-*.csv")
	if err != nil {
		return "", nil, fmt.Errorf("spool standard input: %w", err)
	}
	cleanup := func() { os.Remove(f.Name()) }
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(f, stdin)
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		f.Close()
		cleanup()
		return "", nil, fmt.Errorf("reading standard input: %w", ctx.Err())
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("spool standard input: %w", err)
	}
	return f.Name(), cleanup, nil
}
