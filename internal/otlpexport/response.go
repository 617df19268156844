package otlpexport

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// partialSuccess is the partial_success of an ExportMetricsServiceResponse.
//
// The response is decoded by hand: the generated collector/metrics/v1 package also
// holds a grpc-gateway handler, and linking grpc-gateway into every daemon for a
// message with two fields is not worth it.
type partialSuccess struct {
	rejected int64
	message  string
}

var errBadResponse = errors.New("malformed ExportMetricsServiceResponse")

// decodeExportResponse decodes an ExportMetricsServiceResponse. Unknown fields are
// skipped, as protobuf requires; it never panics on any input.
func decodeExportResponse(b []byte) (partialSuccess, error) {
	var ps partialSuccess
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ps, errBadResponse
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType { // partial_success
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ps, errBadResponse
			}
			if err := decodePartialSuccess(v, &ps); err != nil {
				return ps, err
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ps, errBadResponse
		}
		b = b[n:]
	}
	return ps, nil
}

// decodePartialSuccess merges an ExportMetricsPartialSuccess into ps (fields of a
// repeated embedded message merge).
func decodePartialSuccess(b []byte, ps *partialSuccess) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errBadResponse
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType: // rejected_data_points
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errBadResponse
			}
			ps.rejected = int64(v)
			b = b[n:]
		case num == 2 && typ == protowire.BytesType: // error_message
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errBadResponse
			}
			ps.message = string(v)
			b = b[n:]
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return errBadResponse
			}
			b = b[n:]
		}
	}
	return nil
}
