// Package tasks defines enrollq's one task type and the handler that runs
// it.
//
// # Task types
//
// TypeEnrollmentURL ("enrollq:enrollment_url") mints one enrollment URL for
// one user profile. Its payload is the versioned JSON of Payload: the
// campaign, the profile id, the profile's position in the input and its
// passthrough columns (such as email), and for a refresh the expiry before
// which a stored URL is minted again. It never holds the API key or a URL.
// The task id is the campaign and the profile id (TaskID), so enqueuing a
// profile twice into one campaign makes one task.
//
// # Retries
//
// What each API answer makes the queue do is decided by Decide, one table
// tested row by row:
//
//   - success: the result is stored; the task completes.
//   - 400, 404, 413 and other client errors, or x-should-retry: false: the
//     profile is recorded as failed with the error's type, message and
//     request id; the task is not retried (asynq.SkipRetry).
//   - 429: the task waits the API's retry-after (or a jittered backoff when
//     there is none) and runs again; the wait is not a failure, but every
//     call counts against MaxCalls, so nothing loops forever.
//   - 429 with a spend-limit code, 401, 402, 403: a fault of configuration,
//     not of the profile. The queue is paused, the task waits in the retry
//     set without using up its retries, and an operator fixes the cause and
//     resumes the queue.
//   - 408, 409, 5xx, 529, timeouts, resets, x-should-retry: true: retried
//     with capped exponential backoff and full jitter, up to MaxRetry; then
//     recorded as failed.
//   - a 200 that cannot be used (no url, wrong type, bad or past
//     expires_at): retried up to MaxMalformed times, then failed.
package tasks

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/uprof"
)

// TypeEnrollmentURL is the task type that mints one enrollment URL.
const TypeEnrollmentURL = "enrollq:enrollment_url"

// PayloadVersion is the payload version this build writes and reads.
const PayloadVersion = 1

// Payload is the task's JSON body.
type Payload struct {
	Version   int               `json:"v"`
	Campaign  string            `json:"campaign"`
	ProfileID string            `json:"user_profile_id"`
	Seq       int64             `json:"seq"`
	Columns   map[string]string `json:"columns,omitempty"`

	// EnqueuedAt is when the producer made the task, for task latency.
	EnqueuedAt time.Time `json:"enqueued_at,omitzero"`

	// Deadline, when set, is the campaign's end: after it nothing is
	// retried and the profile is recorded as failed.
	Deadline time.Time `json:"deadline,omitzero"`

	// RefreshBefore, when set, makes the task a refresh: a stored URL
	// that expires by then is minted again and replaced, while a newer
	// one (the refresh ran already) ends the task. A refresh that fails
	// leaves a still-live URL in place.
	RefreshBefore time.Time `json:"refresh_before,omitzero"`

	// PriorAttempts are the profile's API calls in this campaign that the
	// store no longer counts (--retry-failed clears them, for a fresh
	// budget); the result's Attempts adds them, so that it says every call
	// made for the profile.
	PriorAttempts int64 `json:"prior_attempts,omitempty"`
}

// TaskID is the asynq task id of a profile in a campaign.
func TaskID(campaignName, profileID string) string {
	return campaignName + ":" + profileID
}

// NewTask returns the task for p. It refuses a payload that could never
// run, so that no such task is ever enqueued.
func NewTask(p Payload) (*asynq.Task, error) {
	p.Version = PayloadVersion
	if err := campaign.ValidateName(p.Campaign); err != nil {
		return nil, err
	}
	if err := uprof.Validate(p.ProfileID); err != nil {
		return nil, fmt.Errorf("user profile id %q: %w", p.ProfileID, err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode payload of %s: %w", p.ProfileID, err)
	}
	return asynq.NewTask(TypeEnrollmentURL, data), nil
}

// DecodePayload reads a task's payload and checks its version.
func DecodePayload(data []byte) (Payload, error) {
	var p Payload
	if err := json.Unmarshal(data, &p); err != nil {
		return Payload{}, fmt.Errorf("decode payload: %w", err)
	}
	if p.Version != PayloadVersion {
		return Payload{}, fmt.Errorf("decode payload: version %d, this build reads %d", p.Version, PayloadVersion)
	}
	if err := campaign.ValidateName(p.Campaign); err != nil {
		return Payload{}, fmt.Errorf("decode payload: %w", err)
	}
	return p, nil
}

// TaskTimeout bounds one run of a task: the limiter wait, the API call and
// the store. It exceeds the client's call deadline so that a call always
// ends before its task does.
const TaskTimeout = 2 * time.Minute

// Options are the asynq options of a profile's task in a campaign. The
// task's MaxRetry is one above the handler's retry budget, so that the
// handler, not asynq's archive, records the last failure.
func Options(queue, campaignName, profileID string, maxRetry int) []asynq.Option {
	if maxRetry <= 0 {
		maxRetry = DefaultMaxRetry
	}
	return []asynq.Option{
		asynq.Queue(queue),
		asynq.TaskID(TaskID(campaignName, profileID)),
		asynq.MaxRetry(maxRetry + 1),
		asynq.Timeout(TaskTimeout),
	}
}
