package worker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/redistest"
)

type refusingSink struct{ calls int }

func (s *refusingSink) Put(context.Context, campaign.Result) error {
	s.calls++
	return errors.New("sink down")
}

// TestSinkStoreKeepsTheResultOnTheLastAttempt: a sink that refuses makes
// the task retry, but on its last attempt the result is stored in Redis
// all the same, so that no profile ends without one.
func TestSinkStoreKeepsTheResultOnTheLastAttempt(t *testing.T) {
	t.Parallel()
	store := campaign.NewStore(redistest.New(t), time.Hour)
	name := redistest.Name(t)
	for _, tt := range []struct {
		last       bool
		wantStored bool
	}{{false, false}, {true, true}} {
		sink := &refusingSink{}
		s := sinkStore{Store: store, sink: sink, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			last: func(context.Context) bool { return tt.last }}
		id := "uprof_last" + map[bool]string{false: "no", true: "yes"}[tt.last]
		r := campaign.Result{Campaign: name, ProfileID: id, Status: campaign.StatusCreated,
			URL: "https://platform.claude.com/x", ExpiresAt: time.Now().Add(time.Hour)}

		_, err := s.Put(context.Background(), r)
		if gotErr := err != nil; gotErr == tt.wantStored {
			t.Errorf("last attempt %v: Put error %v, want error %v", tt.last, err, !tt.wantStored)
		}
		st, err := store.Status(context.Background(), name, id)
		if err != nil {
			t.Fatal(err)
		}
		if stored := st == campaign.StatusCreated; stored != tt.wantStored {
			t.Errorf("last attempt %v: status in Redis %q, want stored %v", tt.last, st, tt.wantStored)
		}
		if sink.calls != 1 {
			t.Errorf("last attempt %v: sink called %d times, want 1", tt.last, sink.calls)
		}
	}
}

type recordingSink struct{ got []campaign.Result }

func (s *recordingSink) Put(_ context.Context, r campaign.Result) error {
	s.got = append(s.got, r)
	return nil
}

// TestSinkStorePutCallGoesThroughTheSink: a first run's result reaches the
// sink, once, with the attempts that Redis then holds (the call counted
// before it, after a 429, included).
func TestSinkStorePutCallGoesThroughTheSink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := campaign.NewStore(redistest.New(t), time.Hour)
	name := redistest.Name(t)
	sink := &recordingSink{}
	s := sinkStore{Store: store, sink: sink, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if _, err := store.CountCall(ctx, name, "uprof_w"); err != nil { // a 429 first
		t.Fatal(err)
	}
	_, calls, err := s.PutCall(ctx, campaign.Result{Campaign: name, ProfileID: "uprof_w", Status: campaign.StatusCreated,
		URL: "https://platform.claude.com/x", ExpiresAt: time.Now().Add(time.Hour), Attempts: 1})
	if err != nil || calls != 2 {
		t.Fatalf("PutCall = %d calls, %v; want 2, nil", calls, err)
	}
	r, ok, err := store.Get(ctx, name, "uprof_w")
	if err != nil || !ok {
		t.Fatalf("Get = %v, %v", ok, err)
	}
	if len(sink.got) != 1 || sink.got[0].Attempts != 2 || r.Attempts != 2 {
		t.Errorf("sink got %d results (attempts %v), Redis attempts %d; want 1 with 2, and 2", len(sink.got), sink.got, r.Attempts)
	}
}
