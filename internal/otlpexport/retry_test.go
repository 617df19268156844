package otlpexport

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestBackoff(t *testing.T) {
	b := backoff{initial: 100 * time.Millisecond, max: time.Second}
	for i, ceiling := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		ceiling *= time.Millisecond
		d := b.next(0)
		if d < ceiling/2 || d > ceiling {
			t.Errorf("attempt %d: delay %s outside [%s, %s]", i, d, ceiling/2, ceiling)
		}
	}
	if d := b.next(500 * time.Hour); d != time.Second {
		t.Errorf("a hint beyond max gave %s, want max", d)
	}
	b.reset()
	if d := b.next(700 * time.Millisecond); d != 700*time.Millisecond {
		t.Errorf("a hint above the backoff gave %s, want the hint", d)
	}
	for range 100 {
		b.next(0) // no overflow
	}
	if d := b.next(0); d < 500*time.Millisecond || d > time.Second {
		t.Errorf("after many attempts: %s", d)
	}
}

func TestClassifyGRPC(t *testing.T) {
	withRetryInfo := func(c codes.Code, d time.Duration) error {
		st, err := status.New(c, "x").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	tests := []struct {
		err   error
		retry bool
		after time.Duration
	}{
		{status.Error(codes.Unavailable, "x"), true, 0},
		{status.Error(codes.DeadlineExceeded, "x"), true, 0},
		{status.Error(codes.Aborted, "x"), true, 0},
		{status.Error(codes.Unauthenticated, "x"), true, 0},
		{withRetryInfo(codes.Unavailable, 3*time.Second), true, 3 * time.Second},
		{status.Error(codes.ResourceExhausted, "message too large"), false, 0},
		{withRetryInfo(codes.ResourceExhausted, time.Second), true, time.Second},
		{status.Error(codes.InvalidArgument, "x"), false, 0},
		{status.Error(codes.Internal, "x"), false, 0},
		{errors.New("not a status"), false, 0}, // codes.Unknown
	}
	for _, tt := range tests {
		retry, after := isRetryable(classifyGRPC(tt.err))
		if retry != tt.retry || after != tt.after {
			t.Errorf("%v: retryable %v after %s, want %v after %s", tt.err, retry, after, tt.retry, tt.after)
		}
	}
}

func TestClassifyHTTP(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		code       int
		retryAfter string
		retry      bool
		after      time.Duration
	}{
		{429, "7", true, 7 * time.Second},
		{503, now.Add(time.Minute).Format(http.TimeFormat), true, time.Minute},
		{502, "", true, 0},
		{504, "soon", true, 0},
		{401, "", true, 0},
		{400, "5", false, 0},
		{404, "", false, 0},
		{500, "", false, 0},
		{413, "", false, 0},
	}
	for _, tt := range tests {
		resp := &http.Response{StatusCode: tt.code, Status: http.StatusText(tt.code), Header: http.Header{}}
		if tt.retryAfter != "" {
			resp.Header.Set("Retry-After", tt.retryAfter)
		}
		retry, after := isRetryable(classifyHTTP(resp, []byte("detail"), now))
		if retry != tt.retry || (retry && after != tt.after) {
			t.Errorf("%d Retry-After %q: retryable %v after %s, want %v after %s", tt.code, tt.retryAfter, retry, after, tt.retry, tt.after)
		}
	}
}
