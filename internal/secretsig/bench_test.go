package secretsig

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"testing"
	"time"
)

// benchSecret has about size bytes of data in 8 keys.
func benchSecret(size int) Secret {
	s := Secret{Namespace: "shoot--project--name", Name: "managedresource-shoot-core-1a2b3c4d", Type: "Opaque", Data: map[string][]byte{}}
	for i := range 8 {
		v := make([]byte, size/8)
		for j := range v {
			v[j] = byte(i + j)
		}
		s.Data[fmt.Sprintf("key-%d.yaml", i)] = v
	}
	return s
}

// naive is the baseline: plain Ed25519 over the concatenated keys and values
// (the never-merged proposal's ambiguous form), without sorting or framing.
func naive(s Secret) []byte {
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b []byte
	for _, k := range keys {
		b = append(append(b, k...), s.Data[k]...)
	}
	return b
}

// BenchmarkSign and BenchmarkVerify report ns/op of the signed form and the
// ratio to plain Ed25519 over the concatenation, measured in the same run.
func BenchmarkSign(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("size=%dKiB", size>>10), func(b *testing.B) {
			key := newKey(b)
			s := benchSecret(size)
			signer := NewSigner(key)
			base := measure(b, func() { ed25519.Sign(key, naive(s)) })
			b.SetBytes(int64(size))
			b.ResetTimer()
			for b.Loop() {
				signer.Sign(s)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/base, "x-baseline")
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("size=%dKiB", size>>10), func(b *testing.B) {
			key := newKey(b)
			s := benchSecret(size)
			signer := NewSigner(key)
			ks := NewKeySet(signer.Public())
			ann := signer.Sign(s)
			msg := naive(s)
			rawSig := ed25519.Sign(key, msg)
			pub := signer.Public()
			base := measure(b, func() { ed25519.Verify(pub, naive(s), rawSig) })
			b.SetBytes(int64(size))
			b.ResetTimer()
			for b.Loop() {
				if _, err := ks.Verify(s, ann); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/base, "x-baseline")
		})
	}
}

// measure returns the ns per call of fn: the fastest of 5 rounds of about 50 ms,
// so a busy machine distorts the baseline less.
func measure(b *testing.B, fn func()) float64 {
	b.Helper()
	best := 0.0
	for range 5 {
		start, n := time.Now(), 0
		for time.Since(start) < 50*time.Millisecond || n < 3 {
			fn()
			n++
		}
		if ns := float64(time.Since(start).Nanoseconds()) / float64(n); best == 0 || ns < best {
			best = ns
		}
	}
	return best
}
