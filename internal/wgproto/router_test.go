package wgproto

import (
	"fmt"
	"testing"
)

// impls returns the implementations this machine runs, by name.
func impls() map[string]impl {
	m := map[string]impl{}
	for name, x := range map[string]impl{"generic": implGeneric, "avx2": implAVX2, "avx512": implAVX512} {
		if implAvailable(x) {
			m[name] = x
		}
	}
	return m
}

// randomKeys returns n random keys.
func randomKeys(t testing.TB, n int) [][KeySize]byte {
	keys := make([][KeySize]byte, n)
	for i := range keys {
		keys[i] = randomKey(t)
	}
	return keys
}

func TestRouterMatch(t *testing.T) {
	for name, x := range impls() {
		t.Run(name, func(t *testing.T) {
			for _, n := range []int{1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100} {
				keys := randomKeys(t, n)
				r := newRouter(keys, x)
				if r.Len() != n {
					t.Fatalf("Len = %d, want %d", r.Len(), n)
				}
				for i, k := range keys {
					msg := newInitiation(t, k)
					for _, hint := range []int{-1, i, (i + 1) % n, n, -5} {
						if got := r.Match(msg, hint); got != i {
							t.Fatalf("n=%d: Match(initiation for key %d, hint %d) = %d", n, i, hint, got)
						}
					}
					msg[InitiationMAC1Offset+3] ^= 0x10
					if got := r.Match(msg, i); got != -1 {
						t.Fatalf("n=%d: Match(corrupt initiation for key %d) = %d, want -1", n, i, got)
					}
				}
				if got := r.Match(newInitiation(t, randomKey(t)), -1); got != -1 {
					t.Fatalf("n=%d: Match(initiation for an unknown key) = %d, want -1", n, got)
				}
			}
		})
	}
}

func TestRouterDuplicates(t *testing.T) {
	for name, x := range impls() {
		t.Run(name, func(t *testing.T) {
			a, b := randomKey(t), randomKey(t)
			keys := [][KeySize]byte{b, a, b, a}
			r := newRouter(keys, x)
			if got := r.Match(newInitiation(t, a), -1); got != 1 {
				t.Errorf("Match = %d, want the first copy, 1", got)
			}
			if got := r.Match(newInitiation(t, a), 3); got != 3 {
				t.Errorf("Match with hint 3 = %d, want 3", got)
			}
		})
	}
}

func TestRouterRejects(t *testing.T) {
	pub := randomKey(t)
	init := newInitiation(t, pub)
	resp := newResponse(t, pub)
	for name, x := range impls() {
		r := newRouter([][KeySize]byte{pub}, x)
		for _, msg := range [][]byte{nil, {}, init[:InitiationSize-1], append(init, 0), resp} {
			if got := r.Match(msg, 0); got != -1 {
				t.Errorf("%s: Match(%d bytes, type %d) = %d, want -1", name, len(msg), firstByte(msg), got)
			}
		}
		if got := newRouter(nil, x).Match(init, 0); got != -1 {
			t.Errorf("%s: empty Router: Match = %d, want -1", name, got)
		}
	}
	var nilRouter *Router
	if got := nilRouter.Match(init, 0); got != -1 || nilRouter.Len() != 0 {
		t.Errorf("nil Router: Match = %d, Len = %d", got, nilRouter.Len())
	}
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

func TestRouterAllocs(t *testing.T) {
	keys := randomKeys(t, 40)
	msg := newInitiation(t, keys[39])
	for name, x := range impls() {
		r := newRouter(keys, x)
		for _, hint := range []int{-1, 39} {
			if n := testing.AllocsPerRun(100, func() { r.Match(msg, hint) }); n != 0 {
				t.Errorf("%s: Match(hint %d) allocates %v times", name, hint, n)
			}
		}
	}
}

// BenchmarkRouterMatch measures the worst case, an initiation for the last key
// and no hint, with each implementation this CPU runs and with plain x/crypto as
// a baseline, plus the hinted case (the hint is right: one check).
func BenchmarkRouterMatch(b *testing.B) {
	perBackend := func(b *testing.B, n int) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/backend")
	}
	for _, n := range []int{10, 100, 1000} {
		keys := randomKeys(b, n)
		msg := newInitiation(b, keys[n-1])
		for _, name := range []string{"avx512", "avx2", "generic"} {
			x, ok := impls()[name]
			if !ok {
				continue
			}
			r := newRouter(keys, x)
			b.Run(fmt.Sprintf("backends=%d/%s", n, name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if r.Match(msg, -1) != n-1 {
						b.Fatal("no match")
					}
				}
				perBackend(b, n)
			})
		}
		b.Run(fmt.Sprintf("backends=%d/baseline=xcrypto-New128", n), func(b *testing.B) {
			xs := make([]xcryptoMAC1, n)
			for i, k := range keys {
				xs[i] = newXCryptoMAC1(k)
			}
			b.ReportAllocs()
			for b.Loop() {
				i := 0
				for i < n && !xs[i].check(msg) {
					i++
				}
				if i != n-1 {
					b.Fatal("no match")
				}
			}
			perBackend(b, n)
		})
		r := NewRouter(keys)
		b.Run(fmt.Sprintf("backends=%d/hinted", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r.Match(msg, n-1) != n-1 {
					b.Fatal("no match")
				}
			}
		})
	}
}

// TestRouterConcurrent shares one Router between goroutines (run with -race).
func TestRouterConcurrent(t *testing.T) {
	keys := randomKeys(t, 50)
	r := NewRouter(keys)
	msgs := make([][]byte, len(keys))
	for i, k := range keys {
		msgs[i] = newInitiation(t, k)
	}
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			for i := range msgs {
				j := (i + g*13) % len(msgs)
				if got := r.Match(msgs[j], g-1); got != j {
					errs <- fmt.Errorf("goroutine %d: Match(initiation for key %d) = %d", g, j, got)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
