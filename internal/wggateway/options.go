package wggateway

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/trellis-garden/trellis/internal/kube"
)

// Name is the binary's name.
const Name = "wg-gateway"

// Options are wg-gateway's own flags.
type Options struct {
	Gateway Config

	Source        string
	File          string
	FileInterval  time.Duration
	Namespace     string
	LabelSelector string
	PortName      string
	DefaultPort   uint16
	Kube          kube.ClientOptions
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{Gateway: DefaultConfig()}
}

func (o *Options) AddFlags(fs *pflag.FlagSet) {
	c := &o.Gateway
	fs.StringVar(&c.ListenAddress, "wireguard.listen-address", c.ListenAddress, "UDP address clients send WireGuard packets to; \":51820\" is dual-stack, an IPv4 or IPv6 literal binds that family only.")
	fs.IntVar(&c.Shards, "gateway.shards", 0, "Listener sockets sharing the port (SO_REUSEPORT), each with its own goroutines and sessions; 0 = one per CPU (GOMAXPROCS).")
	fs.IntVar(&c.BatchSize, "gateway.batch-size", c.BatchSize, "Datagrams per recvmmsg/sendmmsg system call (1-1024).")
	fs.IntVar(&c.MaxSessions, "sessions.max", c.MaxSessions, "Maximum (client address, backend) sessions; at the cap unanswered sessions are evicted first, then new clients are refused.")
	fs.IntVar(&c.MaxClientsPerBackend, "sessions.max-clients-per-backend", c.MaxClientsPerBackend, "Maximum client addresses per backend and shard at once (each uses its own upstream socket towards the backend; sockets open as clients come). A backend with N peers needs about N/shards plus headroom.")
	fs.DurationVar(&c.PendingTimeout, "sessions.pending-timeout", c.PendingTimeout, "End a session whose backend has not answered its initiation within this time.")
	fs.DurationVar(&c.IdleTimeout, "sessions.idle-timeout", c.IdleTimeout, "End a session without packets in either direction for this long (WireGuard keys expire after 180s).")
	fs.Float64Var(&c.HandshakeRate, "handshake.rate-limit", c.HandshakeRate, "Handshake initiations per second allowed from one source (IPv4 address, IPv6 /64; token bucket); 0 disables the limit.")
	fs.IntVar(&c.HandshakeBurst, "handshake.burst", c.HandshakeBurst, "Burst of handshake initiations allowed from one source.")
	fs.IntVar(&c.MaxRateLimitedSources, "handshake.max-sources", c.MaxRateLimitedSources, "Sources (IPv4 addresses, IPv6 /64s) the rate limiter tracks at most (bounded memory); when full, new sources are refused until idle ones are forgotten (within a second) and the gateway demands cookies.")
	fs.Var(newCookieModeValue(&c.Cookies), "handshake.cookies", "When initiations need a valid gateway mac2 (WireGuard cookie): auto (under handshake pressure) or always.")
	fs.BoolVar(&c.UDPOffload, "gateway.udp-offload", c.UDPOffload, "Use UDP receive offload (UDP_GRO) and segmentation offload (UDP_SEGMENT) where the kernel allows: a client's batch of packets is read, routed and sent on as one buffer. Sockets the kernel refuses fall back to one datagram at a time (see the udp_offload metrics).")

	fs.StringVar(&o.Source, "backends.source", "kubernetes", "Where backends come from: kubernetes (labelled Services) or file (YAML, reloaded on change).")
	fs.StringVar(&o.File, "backends.file", "", "Backends YAML file for --backends.source=file.")
	fs.DurationVar(&o.FileInterval, "backends.file.interval", 2*time.Second, "How often the backends file is checked for changes.")
	fs.StringVar(&o.Namespace, "backends.namespace", "", "Watch Services in this namespace only; empty watches all namespaces.")
	fs.StringVar(&o.LabelSelector, "backends.label-selector", "trellis.dev/wg-gateway=true", "Label selector of backend Services.")
	fs.StringVar(&o.PortName, "backends.port-name", "wireguard", "Name of the Service's UDP port to send to.")
	fs.Uint16Var(&o.DefaultPort, "backends.default-port", 51820, "Port used when a Service has no port named --backends.port-name.")
	o.Kube.AddFlags(fs)
}

func (o *Options) Complete() error { return nil }

// configFlags names the flag of each Config field.
var configFlags = map[string]string{
	"ListenAddress":         "wireguard.listen-address",
	"Shards":                "gateway.shards",
	"BatchSize":             "gateway.batch-size",
	"MaxSessions":           "sessions.max",
	"MaxClientsPerBackend":  "sessions.max-clients-per-backend",
	"PendingTimeout":        "sessions.pending-timeout",
	"IdleTimeout":           "sessions.idle-timeout",
	"HandshakeRate":         "handshake.rate-limit",
	"HandshakeBurst":        "handshake.burst",
	"MaxRateLimitedSources": "handshake.max-sources",
	"Cookies":               "handshake.cookies",
	"UDPOffload":            "gateway.udp-offload",
}

// flagErrors names the flag of each *ConfigError in err (a joined error).
func flagErrors(err error) []error {
	var errs []error
	all := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		all = j.Unwrap()
	}
	for _, e := range all {
		var ce *ConfigError
		if errors.As(e, &ce) {
			if flag, ok := configFlags[ce.Field]; ok {
				e = fmt.Errorf("--%s: %w", flag, ce.Err)
			}
		}
		errs = append(errs, e)
	}
	return errs
}

func (o *Options) Validate() error {
	var errs []error
	if err := o.Gateway.Validate(); err != nil {
		errs = append(errs, flagErrors(err)...)
	}
	switch o.Source {
	case "kubernetes":
		if err := o.Kube.Validate(); err != nil {
			errs = append(errs, err)
		}
		if o.PortName == "" || o.DefaultPort == 0 {
			errs = append(errs, errors.New("--backends.port-name and --backends.default-port: required"))
		}
	case "file":
		if o.File == "" {
			errs = append(errs, errors.New("--backends.file: required with --backends.source=file"))
		}
		if o.FileInterval <= 0 {
			errs = append(errs, fmt.Errorf("--backends.file.interval: must be positive, got %s", o.FileInterval))
		}
	default:
		errs = append(errs, fmt.Errorf("--backends.source: %q is not one of kubernetes, file", o.Source))
	}
	return errors.Join(errs...)
}

// cookieModeValue is the pflag.Value of --handshake.cookies.
type cookieModeValue struct{ m *CookieMode }

func newCookieModeValue(m *CookieMode) *cookieModeValue { return &cookieModeValue{m} }

func (v *cookieModeValue) String() string { return string(*v.m) }
func (v *cookieModeValue) Type() string   { return "string" }
func (v *cookieModeValue) Set(s string) error {
	switch CookieMode(s) {
	case CookiesAuto, CookiesAlways:
		*v.m = CookieMode(s)
		return nil
	}
	return fmt.Errorf("%q is not one of auto, always", s)
}
