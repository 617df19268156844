package otlptest

import (
	"google.golang.org/protobuf/encoding/protowire"
)

// exportResponse encodes an ExportMetricsServiceResponse, with a partial_success
// when rejected > 0.
func exportResponse(rejected int64) []byte {
	if rejected <= 0 {
		return []byte{}
	}
	var ps []byte
	ps = protowire.AppendTag(ps, 1, protowire.VarintType) // rejected_data_points
	ps = protowire.AppendVarint(ps, uint64(rejected))
	ps = protowire.AppendTag(ps, 2, protowire.BytesType) // error_message
	ps = protowire.AppendString(ps, "otlptest: rejected on request")
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType) // partial_success
	return protowire.AppendBytes(b, ps)
}
