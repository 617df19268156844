// Package otlpcompress holds the compressions of OTLP export requests, for both
// transports: gzip at level 1 and zstd at its fastest level.
//
// Importing it registers, for gRPC, a "gzip" compressor at level 1 in place of
// grpc-go's (which compresses at gzip's default level, several times the CPU of
// a whole scrape for metric payloads that compress almost as well at level 1)
// and a "zstd" compressor. Both decompress any level, so a gRPC server in the
// same process still accepts what any client sends. gRPC compressors are
// registered process-wide by name: every gRPC client in a process that imports
// this package compresses gzip at level 1.
//
// Compression uses github.com/klauspost/compress, whose level-1 gzip is about
// twice as fast as the standard library's and whose output is standard gzip.
package otlpcompress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // registered first, so that init below replaces it
)

// The compressions, as named in gRPC's grpc-encoding and HTTP's
// Content-Encoding.
const (
	Gzip = "gzip"
	Zstd = "zstd"
	None = "none"
)

// Valid tells whether name is one of Gzip, Zstd and None.
func Valid(name string) bool { return name == Gzip || name == Zstd || name == None }

// zstdWindow bounds the encoder's history, and with it its memory: queue records
// and export requests are a few MiB at most, and most of the redundancy of metric
// payloads (repeated attribute keys and values) is near.
const zstdWindow = 1 << 20

// maxDecoderMemory bounds what a zstd decoder allocates for one frame, whatever
// the frame header claims.
const maxDecoderMemory = 64 << 20

func init() {
	encoding.RegisterCompressor(grpcGzip{})
	encoding.RegisterCompressor(grpcZstd{})
}

var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return zw
}}

var zstdEncoders = sync.Pool{New: func() any {
	enc, _ := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(zstdWindow),
		zstd.WithLowerEncoderMem(true),
		zstd.WithEncoderCRC(true),
	)
	return enc
}}

var zstdDecoders = sync.Pool{New: func() any {
	dec, _ := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(maxDecoderMemory),
	)
	return dec
}}

// Append appends p compressed with name (Gzip or Zstd) to dst.
func Append(dst []byte, name string, p []byte) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	switch name {
	case Gzip:
		zw := gzipWriters.Get().(*gzip.Writer)
		defer gzipWriters.Put(zw)
		zw.Reset(buf)
		if _, err := zw.Write(p); err != nil {
			return dst, fmt.Errorf("gzip: %w", err)
		}
		if err := zw.Close(); err != nil {
			return dst, fmt.Errorf("gzip: %w", err)
		}
	case Zstd:
		enc := zstdEncoders.Get().(*zstd.Encoder)
		defer zstdEncoders.Put(enc)
		return enc.EncodeAll(p, dst), nil
	default:
		return dst, fmt.Errorf("compression %q not supported", name)
	}
	return buf.Bytes(), nil
}

// NewReader returns a reader of r decompressed as name ("", "identity", Gzip or
// Zstd), and a function that releases its resources. A caller must bound what
// it reads: compressed data can expand without limit.
func NewReader(name string, r io.Reader) (io.Reader, func(), error) {
	switch name {
	case "", "identity":
		return r, func() {}, nil
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() {}, nil
	case Zstd:
		dec := zstdDecoders.Get().(*zstd.Decoder)
		if err := dec.Reset(r); err != nil {
			zstdDecoders.Put(dec)
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return dec, func() { _ = dec.Reset(nil); zstdDecoders.Put(dec) }, nil
	}
	return nil, nil, fmt.Errorf("content encoding %q not supported", name)
}

// grpcGzip is gRPC's "gzip": level 1 when compressing, any level when
// decompressing.
type grpcGzip struct{}

func (grpcGzip) Name() string { return Gzip }

func (grpcGzip) Compress(w io.Writer) (io.WriteCloser, error) {
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(w)
	return &pooledGzipWriter{zw}, nil
}

type pooledGzipWriter struct{ *gzip.Writer }

func (p *pooledGzipWriter) Close() error {
	err := p.Writer.Close()
	gzipWriters.Put(p.Writer)
	p.Writer = nil
	return err
}

var gzipReaders sync.Pool

func (grpcGzip) Decompress(r io.Reader) (io.Reader, error) {
	zr, ok := gzipReaders.Get().(*gzip.Reader)
	if !ok {
		return gzip.NewReader(r)
	}
	if err := zr.Reset(r); err != nil {
		gzipReaders.Put(zr)
		return nil, err
	}
	return &pooledGzipReader{zr}, nil
}

// pooledGzipReader returns its reader to the pool at the end of the stream.
type pooledGzipReader struct{ *gzip.Reader }

func (p *pooledGzipReader) Read(b []byte) (int, error) {
	if p.Reader == nil {
		return 0, io.EOF
	}
	n, err := p.Reader.Read(b)
	if errors.Is(err, io.EOF) {
		gzipReaders.Put(p.Reader)
		p.Reader = nil
	}
	return n, err
}

// grpcZstd is gRPC's "zstd", as the OpenTelemetry Collector names it.
type grpcZstd struct{}

func (grpcZstd) Name() string { return Zstd }

func (grpcZstd) Compress(w io.Writer) (io.WriteCloser, error) {
	enc := zstdEncoders.Get().(*zstd.Encoder)
	enc.Reset(w)
	return &pooledZstdWriter{enc}, nil
}

type pooledZstdWriter struct{ *zstd.Encoder }

func (p *pooledZstdWriter) Close() error {
	err := p.Encoder.Close()
	zstdEncoders.Put(p.Encoder)
	p.Encoder = nil
	return err
}

func (grpcZstd) Decompress(r io.Reader) (io.Reader, error) {
	dec := zstdDecoders.Get().(*zstd.Decoder)
	if err := dec.Reset(r); err != nil {
		zstdDecoders.Put(dec)
		return nil, err
	}
	return &pooledZstdReader{dec}, nil
}

// pooledZstdReader returns its decoder to the pool at the end of the stream.
type pooledZstdReader struct{ *zstd.Decoder }

func (p *pooledZstdReader) Read(b []byte) (int, error) {
	if p.Decoder == nil {
		return 0, io.EOF
	}
	n, err := p.Decoder.Read(b)
	if err != nil {
		_ = p.Decoder.Reset(nil)
		zstdDecoders.Put(p.Decoder)
		p.Decoder = nil
	}
	return n, err
}
