// Package grpcraw is a gRPC codec that passes already encoded protobuf messages
// through unchanged, so a client can send bytes it stored and a server can answer
// with bytes it built, without generated message types.
package grpcraw

import (
	"fmt"

	"google.golang.org/grpc/mem"
)

// Message is an encoded protobuf message.
type Message []byte

// Codec is registered per call or server as the "proto" codec for Message values.
type Codec struct{}

// Name is "proto": on the wire the messages are ordinary protobuf.
func (Codec) Name() string { return "proto" }

// Marshal returns the bytes of a Message.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	r, ok := v.(Message)
	if !ok {
		return nil, fmt.Errorf("grpcraw: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(r)}, nil
}

// Unmarshal copies the received bytes into a *Message.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*Message)
	if !ok {
		return fmt.Errorf("grpcraw: cannot unmarshal into %T", v)
	}
	*r = data.Materialize()
	return nil
}
