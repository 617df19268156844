package otelscraper

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-garden/trellis/internal/promotlp"
	"github.com/trellis-garden/trellis/internal/promtext"
	"github.com/trellis-garden/trellis/internal/version"
)

// ScopeName is the instrumentation scope of every exported metric.
const ScopeName = "github.com/trellis-garden/trellis/otel-shoot-scraper"

// maxBody bounds one scrape's response; larger bodies fail the scrape.
const maxBody = 64 << 20

// Sink receives the OTLP data of one scrape (the exporter's EnqueueEncoded): an
// encoded MetricsData message holding dataPoints data points. The bytes belong to
// the scraper and are reused by its next scrape: a Sink must copy what it keeps.
type Sink func(metricsData []byte, dataPoints int) error

// scraper runs the scrape loop of one target.
type scraper struct {
	target Target
	rules  func() *Rules
	sink   Sink
	m      *metrics
	log    *slog.Logger
	client *http.Client

	// The encoded Resource and InstrumentationScope of every scrape, and the
	// buffer each scrape's MetricsData is encoded into.
	resource []byte
	scope    []byte
	out      []byte

	parser    promtext.Parser
	conv      *promotlp.Converter
	convLimit int
	body      []byte
	format    promtext.Format
}

func newScraper(t Target, rules func() *Rules, sink Sink, m *metrics, log *slog.Logger, attrs map[string]string) (*scraper, error) {
	client, err := httpClient(t)
	if err != nil {
		return nil, err
	}
	resource, err := proto.Marshal(&resourcepb.Resource{Attributes: resourceAttributes(t, attrs)})
	if err != nil {
		return nil, fmt.Errorf("target %s: resource: %w", t.URL, err)
	}
	scope, err := proto.Marshal(&commonpb.InstrumentationScope{Name: ScopeName, Version: version.Get().Version})
	if err != nil {
		return nil, fmt.Errorf("target %s: scope: %w", t.URL, err)
	}
	return &scraper{
		target:   t,
		rules:    rules,
		sink:     sink,
		m:        m,
		log:      log.With("job", t.Job, "target", t.URL),
		client:   client,
		resource: resource,
		scope:    scope,
	}, nil
}

func httpClient(t Target) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // operator's choice, off by default
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("target %s: CA: %w", t.URL, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("target %s: CA %s: no certificates", t.URL, t.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	return &http.Client{
		Timeout: t.Timeout,
		Transport: &http.Transport{
			Proxy:               nil, // node-local targets: never through a proxy
			DialContext:         (&net.Dialer{Timeout: t.Timeout}).DialContext,
			TLSClientConfig:     tlsCfg,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     2 * t.Interval,
			DisableCompression:  false,
		},
	}, nil
}

// resourceAttributes are the OTLP resource of a target, named as the Collector's
// prometheus receiver names them, plus the target's and the operator's attributes.
func resourceAttributes(t Target, extra map[string]string) []*commonpb.KeyValue {
	attrs := map[string]string{
		"service.name":        t.Job,
		"service.instance.id": t.instance(),
	}
	if u, err := url.Parse(t.URL); err == nil {
		attrs["url.scheme"] = u.Scheme
		attrs["server.address"] = u.Hostname()
		attrs["server.port"] = u.Port()
	}
	for k, v := range t.Attributes {
		attrs[k] = v
	}
	for k, v := range extra {
		if _, ok := attrs[k]; !ok {
			attrs[k] = v
		}
	}
	return keyValues(attrs)
}

func keyValues(m map[string]string) []*commonpb.KeyValue {
	out := make([]*commonpb.KeyValue, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: m[k]}}})
	}
	return out
}

// run scrapes every Interval until ctx ends. The first scrape is spread over the
// interval by a per-target offset so targets do not all fire at once.
func (s *scraper) run(ctx context.Context, offset time.Duration) {
	timer := time.NewTimer(offset)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		s.scrapeOnce(ctx, start)
		next := s.target.Interval - time.Since(start)
		if next < 0 {
			next = 0
		}
		timer.Reset(next)
	}
}

// scrapeOnce scrapes, filters, converts and hands the result to the sink.
func (s *scraper) scrapeOnce(ctx context.Context, now time.Time) {
	job := s.target.Job
	err := s.fetch(ctx)
	dur := time.Since(now)
	s.m.scrapeDuration.WithLabelValues(job, s.target.instance()).Set(dur.Seconds())
	if err != nil {
		s.m.scrapes.WithLabelValues(job, "error").Inc()
		s.m.up.WithLabelValues(job, s.target.instance()).Set(0)
		if ctx.Err() == nil {
			s.log.Warn("scrape failed", "err", err.Error(), "duration", dur.String())
		}
		return
	}
	jr := s.rules().Job(job)
	if s.conv == nil || s.convLimit != jr.SeriesLimit() {
		s.conv = promotlp.New(promotlp.Options{SeriesLimit: jr.SeriesLimit()})
		s.convLimit = jr.SeriesLimit()
	}
	s.conv.Begin(now)
	consts := jr.ConstLabels()
	scraped, kept := 0, 0
	perr := s.parser.Parse(s.body, s.format, func(smp *promtext.Sample) error {
		scraped++
		if !jr.Keep(smp) {
			return nil
		}
		kept++
		s.conv.Add(smp, consts)
		return nil
	})
	// One ResourceMetrics field is a whole MetricsData message.
	out, stats := s.conv.FinishEncoded(s.out[:0], s.resource, s.scope)
	s.out = out
	s.m.samplesScraped.WithLabelValues(job).Add(float64(scraped))
	s.m.samplesKept.WithLabelValues(job).Add(float64(kept))
	s.m.samplesDropped.WithLabelValues(job, "rule").Add(float64(scraped - kept))
	s.m.samplesDropped.WithLabelValues(job, "series_limit").Add(float64(stats.DroppedOverLimit))
	s.m.series.WithLabelValues(job, s.target.instance()).Set(float64(stats.Series))
	if stats.LimitHit {
		s.m.limitHit.WithLabelValues(job).Inc()
		s.log.Warn("series limit reached", "limit", s.convLimit, "dropped", stats.DroppedOverLimit)
	}
	if perr != nil {
		// What was parsed before the error is still exported; the rest is lost
		// for this scrape and the scrape counts as failed.
		s.m.scrapes.WithLabelValues(job, "parse_error").Inc()
		s.m.up.WithLabelValues(job, s.target.instance()).Set(0)
		s.log.Warn("scrape partly unparseable", "err", perr.Error())
	} else {
		s.m.scrapes.WithLabelValues(job, "success").Inc()
		s.m.up.WithLabelValues(job, s.target.instance()).Set(1)
	}
	if stats.DataPoints == 0 {
		return
	}
	if err := s.sink(out, stats.DataPoints); err != nil {
		s.log.Error("cannot queue scraped data", "err", err.Error())
	}
}

// fetch GETs the target into s.body and sets s.format.
func (s *scraper) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.target.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.target.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", promtext.AcceptHeader)
	req.Header.Set("User-Agent", "trellis-otel-shoot-scraper/"+version.Get().Version)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(s.target.Timeout.Seconds(), 'f', -1, 64))
	if s.target.BearerTokenFile != "" {
		// Read at every scrape: projected service account tokens rotate.
		tok, err := os.ReadFile(s.target.BearerTokenFile)
		if err != nil {
			return fmt.Errorf("bearer token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	buf := s.body[:0]
	if n := resp.ContentLength; n > int64(cap(buf)) && n <= maxBody {
		buf = make([]byte, 0, n+1) // +1: room to read the EOF without growing
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := resp.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > maxBody {
			return fmt.Errorf("response larger than %d bytes", maxBody)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if cap(buf) != cap(s.body) && cap(buf)-len(buf) > len(buf)/16 {
		// Grown by append: keep a buffer of the body's size (plus some room for
		// the next scrape) rather than the growth's slack, for the target's life.
		buf = append(make([]byte, 0, len(buf)+len(buf)/16+1), buf...)
	}
	s.body = buf
	s.format = promtext.FormatFromContentType(resp.Header.Get("Content-Type"))
	return nil
}
