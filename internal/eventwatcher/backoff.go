package eventwatcher

import "time"

// backoff is an exponential delay: base, 2*base, 4*base, ... capped at max.
type backoff struct {
	base, max time.Duration
	next      time.Duration
}

func newBackoff(base, max time.Duration) backoff { return backoff{base: base, max: max} }

// Next returns the delay to wait now and doubles the following one.
func (b *backoff) Next() time.Duration {
	if b.next == 0 {
		b.next = b.base
	}
	d := b.next
	b.next = min(2*b.next, b.max)
	return min(d, b.max)
}

// Reset starts over at base after a success.
func (b *backoff) Reset() { b.next = 0 }
