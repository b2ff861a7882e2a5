package main

import "testing"

// TestOverheadRatioPairsRounds: the ratio is the median of the rounds'
// ratios, not a ratio of medians. Here the machine ran twice as fast in
// round 2: the rounds say 50%, 40% and 60%, so 50%; the medians of the
// sides (100 and 60) would say 60%.
func TestOverheadRatioPairsRounds(t *testing.T) {
	t.Parallel()
	runs := func(rates ...float64) []drainResult {
		d := make([]drainResult, len(rates))
		for i, r := range rates {
			d[i].rate = r
		}
		return d
	}
	o := overheadResult{noop: runs(100, 200, 100), ours: runs(50, 80, 60)}
	if got := o.ratio(); got != 0.5 {
		t.Errorf("ratio() = %v, want 0.5", got)
	}
	if got := percents(o.roundRatios(o.ours)); got != "50.0% 40.0% 60.0%" {
		t.Errorf("round ratios = %q, want %q", got, "50.0% 40.0% 60.0%")
	}
	if got := (overheadResult{}).ratio(); got != 0 {
		t.Errorf("ratio() without runs = %v, want 0", got)
	}
}
