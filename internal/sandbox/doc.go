// Package sandbox is a stand-in for the Anthropic user-profile URL
// endpoints, for the local demo, tests and benchmarks. The real API cannot
// be reached from our machines, so the sandbox answers the way it does,
// including the unpleasant answers.
//
// A Server is an http.Handler; mount it on an httptest.Server in tests or on
// an http.Server in cmd/sandbox. It serves
//
//	POST /v1/user_profiles/{user_profile_id}/enrollment_url
//	POST /v1/user_profiles/{user_profile_id}/action_urls
//	GET  /_sandbox/stats   counters as JSON (see Stats)
//	POST /_sandbox/reset   zero the counters and rewind Config.Script
//
// # Checks, in order
//
// A request to an API route passes these steps; the first that refuses it
// answers:
//
//  1. route and method: unknown path 404 not_found_error, not POST 405;
//  2. auth, by x-api-key or Authorization: Bearer: 401 authentication_error;
//  3. anthropic-version 2023-06-01 or 2026-10-21: 400 invalid_request_error;
//  4. anthropic-beta (a comma list; the header may repeat) holds only known
//     values and at least one user-profiles value: 400 invalid_request_error;
//  5. anthropic-workspace-id, if sent and Config.WorkspaceID is set, equals
//     it: 403 permission_error;
//  6. the id is "uprof_" plus ASCII letters and digits: 400;
//  7. the body is empty or {} (enrollment_url), or
//     {"action":{"type":"enroll_end_user"}} (action_urls): 400, or 413 when
//     larger than 64 KiB;
//  8. the per-key token bucket (Config.Rate, Config.Burst): 429
//     rate_limit_error with retry-after in whole seconds;
//  9. Config.Latency plus jitter, cut short when the client goes away;
//  10. one injected fault, drawn from Config.Script then Config.Faults;
//  11. Config.Disabled and the NotFound, BadRequest and Forbidden lists;
//  12. success: 200 with a freshly minted URL valid for Config.TTL.
//
// Every response carries request-id (req_ and 24 letters and digits) and
// anthropic-organization-id, except the no-request-id fault and the faults
// that cut the connection. Once the token bucket has been consulted, the
// response also carries anthropic-ratelimit-requests-limit (the bucket
// size), -remaining (whole tokens left) and -reset (RFC 3339 time at which
// the bucket is full again).
//
// # Faults
//
// Fault names, for ParseFaults and Config.Script:
//
//	400 401 402 403 404 408 409 413 429 500 502 503 504 529
//	                 the status with its error type; 429 adds retry-after: 1
//	429-nohint       429 rate_limit_error without any retry header
//	429-ms           429 with retry-after-ms: 250 only
//	429-date         429 with retry-after as an HTTP date 1 to 2 s ahead
//	spend            429 with details.error_code enforced_spend_limit_reached
//	html502, html503 the status with an HTML body, as a proxy sends it
//	retry-true       500 with x-should-retry: true
//	retry-false      503 with x-should-retry: false
//	no-request-id    500 without the request-id header (the body keeps it)
//	slow             stall Config.SlowDelay, or until the client goes away,
//	                 then answer as if no fault had been drawn
//	reset            close the connection without a response (RST on TCP)
//	drop             send 200 headers and half the body, then close
//	malformed        one of the four malformed-* faults, picked at random
//	malformed-url, malformed-expires, malformed-type, malformed-content-type
//	                 200 without url, with an unparsable expires_at, with a
//	                 wrong type, or with a text/plain content type
//	expired          200 with expires_at one minute in the past
//
// Choices that nothing public confirms are marked "assumed" where they are
// made: the error types of 408, 502 and 503, and a workspace mismatch as 403.
package sandbox
