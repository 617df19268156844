package otlpcompress_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/encoding"

	"github.com/trellis-garden/trellis/internal/otlpexport/otlpcompress"
)

// payload is metric-like: repetitive attribute keys and values.
func payload() []byte {
	var b bytes.Buffer
	for i := 0; i < 20000; i++ {
		b.WriteString("container_cpu_usage_seconds_total namespace=kube-system pod=kube-proxy-")
		b.WriteString(strings.Repeat("x", i%13))
		b.WriteByte(byte(i))
	}
	return b.Bytes()
}

// TestRoundTrip: what Append compresses, NewReader (and the standard library's
// gzip reader, as any receiver) decompresses to the same bytes, and it is
// smaller.
func TestRoundTrip(t *testing.T) {
	p := payload()
	for _, name := range []string{otlpcompress.Gzip, otlpcompress.Zstd} {
		t.Run(name, func(t *testing.T) {
			prefix := []byte("kept")
			c, err := otlpcompress.Append(prefix, name, p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(c, prefix) {
				t.Fatal("Append did not append")
			}
			c = c[len(prefix):]
			if len(c) >= len(p)/4 {
				t.Errorf("compressed %d of %d bytes only", len(c), len(p))
			}
			for range 2 { // a pooled reader is reused
				r, release, err := otlpcompress.NewReader(name, bytes.NewReader(c))
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(r)
				release()
				if err != nil || !bytes.Equal(got, p) {
					t.Fatalf("round trip: %v, %d bytes, want %d", err, len(got), len(p))
				}
			}
			if name == otlpcompress.Gzip {
				zr, err := gzip.NewReader(bytes.NewReader(c))
				if err != nil {
					t.Fatal(err)
				}
				if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, p) {
					t.Fatalf("standard gzip reader: %v", err)
				}
			}
		})
	}
}

// TestGRPCCompressors: the registered gRPC "gzip" compresses at level 1 (its
// output is the size of level 1's, not of the default level's) and both
// registered compressors decompress what the standard library produces at any
// level.
func TestGRPCCompressors(t *testing.T) {
	p := payload()
	level := func(l int) []byte {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, l)
		_, _ = zw.Write(p)
		_ = zw.Close()
		return b.Bytes()
	}
	c := encoding.GetCompressor("gzip")
	var b bytes.Buffer
	w, err := c.Compress(&b)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(p)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	best, fast := len(level(gzip.DefaultCompression)), len(level(gzip.BestSpeed))
	if got := b.Len(); got <= best || got > fast*11/10 {
		t.Errorf("grpc gzip: %d bytes; level 1 gives %d, the default level %d", got, fast, best)
	}
	for _, in := range [][]byte{b.Bytes(), level(gzip.BestCompression)} {
		r, err := c.Decompress(bytes.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("grpc gzip decompress: %v", err)
		}
	}
	z := encoding.GetCompressor("zstd")
	if z == nil {
		t.Fatal("no zstd compressor registered")
	}
	b.Reset()
	w, _ = z.Compress(&b)
	_, _ = w.Write(p)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r, err := z.Decompress(bytes.NewReader(b.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("grpc zstd decompress: %v", err)
		}
	}
}

// TestHostile: garbage and unknown encodings are errors, never a crash; a
// decompression bomb is bounded by what the caller reads.
func TestHostile(t *testing.T) {
	if _, _, err := otlpcompress.NewReader("br", strings.NewReader("x")); err == nil {
		t.Error("unknown encoding accepted")
	}
	for _, name := range []string{otlpcompress.Gzip, otlpcompress.Zstd} {
		r, release, err := otlpcompress.NewReader(name, strings.NewReader("not compressed at all, clearly"))
		if err == nil {
			_, err = io.ReadAll(r)
			release()
		}
		if err == nil {
			t.Errorf("%s: garbage decoded without error", name)
		}
		bomb, err := otlpcompress.Append(nil, name, make([]byte, 16<<20))
		if err != nil {
			t.Fatal(err)
		}
		r, release, err = otlpcompress.NewReader(name, bytes.NewReader(bomb))
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, io.LimitReader(r, 1<<20))
		release()
		if err != nil || n != 1<<20 {
			t.Errorf("%s: bounded read of a bomb: %d bytes, %v", name, n, err)
		}
	}
}

func FuzzNewReader(f *testing.F) {
	for _, name := range []string{otlpcompress.Gzip, otlpcompress.Zstd} {
		c, _ := otlpcompress.Append(nil, name, []byte("metric payload metric payload"))
		f.Add(name == otlpcompress.Zstd, c)
	}
	f.Fuzz(func(t *testing.T, zstd bool, data []byte) {
		name := otlpcompress.Gzip
		if zstd {
			name = otlpcompress.Zstd
		}
		r, release, err := otlpcompress.NewReader(name, bytes.NewReader(data))
		if err != nil {
			return
		}
		defer release()
		_, _ = io.Copy(io.Discard, io.LimitReader(r, 8<<20))
	})
}
