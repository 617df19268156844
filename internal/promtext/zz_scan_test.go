package promtext

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

var scanVals = [][]byte{
	[]byte(`c0" `), []byte(`total",`), []byte(`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0123abcd_0123_4567_89ab_0123456789ab.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope",`),
	[]byte(`europe-docker.pkg.dev/gardener-project/releases/gardener/node-agent:v1.110.0",`),
	[]byte(`0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",`), []byte(`kube-system",`), []byte(`app-0123456789-abcde"}`),
}

func scanIndexByte(b []byte) (int, bool) {
	q := bytes.IndexByte(b, '"')
	if q < 0 {
		return len(b), false
	}
	if bytes.IndexByte(b[:q], '\\') >= 0 {
		return 0, false
	}
	return q, !utf8.Valid(b[:q])
}

var sink int

func BenchmarkScanSWAR(b *testing.B) {
	for b.Loop() {
		for _, v := range scanVals {
			n, _ := scanQuoteOrBackslash(v)
			sink += n
		}
	}
}

func BenchmarkScanIndexByte(b *testing.B) {
	for b.Loop() {
		for _, v := range scanVals {
			n, _ := scanIndexByte(v)
			sink += n
		}
	}
}
