package otlpexport

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is exponential backoff with jitter: the n-th delay is drawn from
// [d/2, d] with d = initial * 2^n, capped at max. Jitter spreads the retries of many
// scrapers after a shared receiver comes back.
type backoff struct {
	initial, max time.Duration
	attempt      int
}

// next returns the delay before the next attempt. A receiver's hint (Retry-After,
// RetryInfo) is honoured when longer, up to max, so a misbehaving receiver cannot
// stall the queue for longer than that.
func (b *backoff) next(hint time.Duration) time.Duration {
	d := b.max
	if b.attempt < 32 {
		d = min(b.initial<<b.attempt, b.max)
		if d <= 0 { // overflow
			d = b.max
		}
	}
	b.attempt++
	d = d/2 + rand.N(d/2+1)
	return min(max(d, hint), b.max)
}

func (b *backoff) reset() { b.attempt = 0 }

// sleep waits for d or until ctx ends or done is closed; it reports whether d passed.
func sleep(ctx context.Context, done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-done:
		return false
	}
}
