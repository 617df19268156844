package wgproto

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// msgOf returns a message of n bytes with type byte t and the other bytes
// filled with a pattern, the reserved bytes zero.
func msgOf(t byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	if n > 0 {
		b[0] = t
	}
	for i := 1; i < 4 && i < n; i++ {
		b[i] = 0
	}
	return b
}

func TestType(t *testing.T) {
	for _, tc := range []struct {
		name   string
		msg    []byte
		want   MessageType
		wantOK bool
	}{
		{"nil", nil, 0, false},
		{"empty", []byte{}, 0, false},
		{"type byte only", []byte{1}, 0, false},
		{"header only", []byte{4, 0, 0, 0}, 0, false},
		{"initiation", msgOf(1, InitiationSize), MessageInitiation, true},
		{"initiation short", msgOf(1, InitiationSize-1), 0, false},
		{"initiation long", msgOf(1, InitiationSize+1), 0, false},
		{"initiation padded to 4096", msgOf(1, 4096), 0, false},
		{"response", msgOf(2, ResponseSize), MessageResponse, true},
		{"response short", msgOf(2, ResponseSize-1), 0, false},
		{"response long", msgOf(2, ResponseSize+1), 0, false},
		{"response with initiation size", msgOf(2, InitiationSize), 0, false},
		{"cookie reply", msgOf(3, CookieReplySize), MessageCookieReply, true},
		{"cookie reply short", msgOf(3, CookieReplySize-1), 0, false},
		{"cookie reply long", msgOf(3, CookieReplySize+1), 0, false},
		{"keepalive", msgOf(4, KeepaliveSize), MessageTransport, true},
		{"transport", msgOf(4, 1420), MessageTransport, true},
		{"transport 64 KiB", msgOf(4, 65535), MessageTransport, true},
		{"transport short", msgOf(4, TransportMinSize-1), 0, false},
		{"type 0", msgOf(0, 148), 0, false},
		{"type 5", msgOf(5, 148), 0, false},
		{"type 255", msgOf(255, 148), 0, false},
		{"reserved byte 1", func() []byte { b := msgOf(1, InitiationSize); b[1] = 1; return b }(), 0, false},
		{"reserved byte 2", func() []byte { b := msgOf(4, 100); b[2] = 0x80; return b }(), 0, false},
		{"reserved byte 3", func() []byte { b := msgOf(2, ResponseSize); b[3] = 1; return b }(), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Type(tc.msg)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("Type = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestMessageTypeString(t *testing.T) {
	for typ, want := range map[MessageType]string{
		MessageInitiation: "initiation", MessageResponse: "response",
		MessageCookieReply: "cookie_reply", MessageTransport: "transport", 9: "unknown(9)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("MessageType(%d).String() = %q, want %q", typ, got, want)
		}
	}
}

func TestSenderReceiver(t *testing.T) {
	put := func(b []byte, off int, v uint32) []byte {
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	for _, tc := range []struct {
		name             string
		msg              []byte
		sender, receiver uint32
	}{
		{"initiation", put(msgOf(1, InitiationSize), 4, 0xa1b2c3d4), 0xa1b2c3d4, 0},
		{"response", put(put(msgOf(2, ResponseSize), 4, 0x01020304), 8, 0xfffffffe), 0x01020304, 0xfffffffe},
		{"cookie reply", put(msgOf(3, CookieReplySize), 4, 7), 0, 7},
		{"transport", put(msgOf(4, 200), 4, 0x80000000), 0, 0x80000000},
		{"keepalive", put(msgOf(4, KeepaliveSize), 4, 1), 0, 1},
		{"nil", nil, 0, 0},
		{"short initiation", msgOf(1, 7), 0, 0},
		{"short cookie reply", msgOf(3, 7), 0, 0},
		{"short response", msgOf(2, 7), 0, 0},
		{"unknown type", msgOf(9, 100), 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Sender(tc.msg); got != tc.sender {
				t.Errorf("Sender = %#x, want %#x", got, tc.sender)
			}
			if got := Receiver(tc.msg); got != tc.receiver {
				t.Errorf("Receiver = %#x, want %#x", got, tc.receiver)
			}
		})
	}
}

func TestAccessorsAllocs(t *testing.T) {
	msg := msgOf(2, ResponseSize)
	if n := testing.AllocsPerRun(100, func() { Type(msg); Sender(msg); Receiver(msg) }); n != 0 {
		t.Errorf("Type/Sender/Receiver allocate %v times", n)
	}
}

func TestParseKey(t *testing.T) {
	var key [KeySize]byte
	for i := range key {
		key[i] = byte(0xf0 - i)
	}
	b64 := base64.StdEncoding.EncodeToString(key[:])
	hx := hex.EncodeToString(key[:])
	for _, tc := range []struct {
		name string
		in   string
		err  error // nil: want key
	}{
		{"base64", b64, nil},
		{"base64 with newline", b64 + "\n", nil},
		{"hex", hx, nil},
		{"hex upper case", strings.ToUpper(hx), nil},
		{"hex with spaces", "  " + hx + "\t", nil},
		{"empty", "", ErrKeyLength},
		{"base64 too short", b64[:43], ErrKeyLength},
		{"base64 too long", b64 + "A", ErrKeyLength},
		{"base64 url alphabet", strings.NewReplacer("+", "-", "/", "_").Replace(b64), ErrKeyEncoding},
		{"base64 without padding", b64[:43] + "A", ErrKeyEncoding},
		{"base64 double padding", b64[:42] + "==", ErrKeyEncoding},
		{"base64 non-zero padding bits", b64[:42] + "B=", ErrKeyEncoding},
		{"base64 bad character", "!" + b64[1:], ErrKeyEncoding},
		{"hex bad character", "g" + hx[1:], ErrKeyEncoding},
		{"hex too short", hx[:62], ErrKeyLength},
		{"hex too long", hx + "00", ErrKeyLength},
		{"zero base64", base64.StdEncoding.EncodeToString(make([]byte, 32)), ErrKeyZero},
		{"zero hex", strings.Repeat("0", 64), ErrKeyZero},
		{"private key file with comment", b64 + " # key", ErrKeyLength},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey(tc.in)
			switch {
			case tc.err == nil && err != nil:
				t.Fatalf("ParseKey(%q): %v", tc.in, err)
			case tc.err == nil && got != key:
				t.Fatalf("ParseKey(%q) = %x, want %x", tc.in, got, key)
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Fatalf("ParseKey(%q) error = %v, want %v", tc.in, err, tc.err)
			case tc.err != nil && got != [KeySize]byte{}:
				t.Fatalf("ParseKey(%q) returned a key with an error", tc.in)
			}
		})
	}
}

func TestKeyString(t *testing.T) {
	// The example public key from wg(8).
	const s = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
	k, err := ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := KeyString(k); got != s {
		t.Errorf("KeyString = %q, want %q", got, s)
	}
	if k2, err := ParseKey(hex.EncodeToString(k[:])); err != nil || k2 != k {
		t.Errorf("hex round trip: %x, %v", k2, err)
	}
}

// FuzzType feeds arbitrary datagrams to Type and the accessors: they must never
// panic, and for a message Type accepts the accessors must read the right bytes.
func FuzzType(f *testing.F) {
	for _, seed := range [][]byte{
		nil, {1}, {4, 0, 0, 0},
		msgOf(1, InitiationSize), msgOf(2, ResponseSize), msgOf(3, CookieReplySize),
		msgOf(4, KeepaliveSize), msgOf(4, 100), msgOf(1, ResponseSize), msgOf(5, 32),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		typ, ok := Type(b)
		s, r := Sender(b), Receiver(b)
		if !bytes.Equal(b, orig) {
			t.Fatal("Type or an accessor changed the message")
		}
		if !ok {
			if typ != 0 {
				t.Fatalf("Type = %v with ok false", typ)
			}
			return
		}
		if b[1]|b[2]|b[3] != 0 || MessageType(b[0]) != typ {
			t.Fatalf("Type accepted header % x as %v", b[:4], typ)
		}
		le := func(off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
		var wantS, wantR uint32
		switch typ {
		case MessageInitiation:
			wantS = le(SenderOffset)
			if len(b) != InitiationSize {
				t.Fatalf("initiation of %d bytes", len(b))
			}
		case MessageResponse:
			wantS, wantR = le(SenderOffset), le(ResponseReceiverOffset)
			if len(b) != ResponseSize {
				t.Fatalf("response of %d bytes", len(b))
			}
		case MessageCookieReply:
			wantR = le(ReceiverOffset)
			if len(b) != CookieReplySize {
				t.Fatalf("cookie reply of %d bytes", len(b))
			}
		case MessageTransport:
			wantR = le(ReceiverOffset)
			if len(b) < TransportMinSize {
				t.Fatalf("transport of %d bytes", len(b))
			}
		default:
			t.Fatalf("Type = %v", typ)
		}
		if s != wantS || r != wantR {
			t.Fatalf("%v: Sender, Receiver = %#x, %#x; want %#x, %#x", typ, s, r, wantS, wantR)
		}
	})
}
