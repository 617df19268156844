package otlpexport

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// encodeResponse builds an ExportMetricsServiceResponse by hand, with an unknown
// field in each message.
func encodeResponse(ps partialSuccess) []byte {
	var inner []byte
	inner = protowire.AppendTag(inner, 1, protowire.VarintType)
	inner = protowire.AppendVarint(inner, uint64(ps.rejected))
	inner = protowire.AppendTag(inner, 2, protowire.BytesType)
	inner = protowire.AppendString(inner, ps.message)
	inner = protowire.AppendTag(inner, 9, protowire.Fixed32Type)
	inner = protowire.AppendFixed32(inner, 1)
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, inner)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	return protowire.AppendString(b, "x")
}

func TestDecodeExportResponse(t *testing.T) {
	for _, want := range []partialSuccess{{}, {rejected: 7, message: "bad points"}, {message: "just a warning"}} {
		got, err := decodeExportResponse(encodeResponse(want))
		if err != nil || got != want {
			t.Errorf("decodeExportResponse = %+v, %v, want %+v", got, err, want)
		}
	}
	if got, err := decodeExportResponse(nil); err != nil || got != (partialSuccess{}) {
		t.Errorf("empty response = %+v, %v", got, err)
	}
	for _, bad := range [][]byte{{0x0a, 0x05, 0x08}, {0x0a}, {0x0a, 0x02, 0x08, 0xff}, {0xff}} {
		if _, err := decodeExportResponse(bad); err == nil {
			t.Errorf("malformed response %x decoded", bad)
		}
	}
}
