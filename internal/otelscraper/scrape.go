package otelscraper

import (
	"bytes"
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

	"github.com/klauspost/compress/gzip"

	"github.com/trellis-garden/trellis/internal/promotlp"
	"github.com/trellis-garden/trellis/internal/promtext"
	"github.com/trellis-garden/trellis/internal/version"
)

// ScopeName is the instrumentation scope of every exported metric.
const ScopeName = "github.com/trellis-garden/trellis/otel-shoot-scraper"

// maxBody bounds one scrape's response; the part of a larger body beyond it is
// not read and the scrape fails.
const maxBody = 64 << 20

// DefaultChunkDataPoints is the default of --queue.record-max-data-points: the
// data points of one chunk a scrape is encoded and queued in.
const DefaultChunkDataPoints = 8000

// Sink receives the OTLP data of a scrape (the exporter's EnqueueEncoded), in
// chunks: each an encoded MetricsData message holding dataPoints data points.
// The bytes belong to the scraper and are reused for its next chunk: a Sink
// must copy what it keeps.
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
	// What the converter's remembered sample keys were made with (see
	// promotlp.Converter.Known): the job's rules and the payload's format.
	keysRules  *JobRules
	keysFormat promtext.Format
	chunk      promotlp.ChunkOptions // bounds of the chunks a scrape is handed over in
	consts     []promtext.Label      // scratch: the constLabels a sample lacks
	// report adds up, scrape_duration_seconds, scrape_samples_scraped,
	// scrape_samples_post_metric_relabeling and scrape_series_added to every
	// scrape, as Prometheus does.
	report bool
	sample promtext.Sample // scratch for the report samples
	// acceptGzip asks the target for a gzip-compressed response, as
	// Prometheus does by default (enable_compression).
	acceptGzip bool
	gz         *gzip.Reader // reused for gzip-compressed responses

	// Start-time state across restarts: the file (empty: none), how often it
	// is written besides at the end of run, when it was last written, and
	// the state read at start until the converter takes it.
	startsFile string
	saveEvery  time.Duration
	lastSave   time.Time
	restore    []promotlp.SeriesStart
	starts     []promotlp.SeriesStart // scratch for saveStarts
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
		chunk:    promotlp.ChunkOptions{MaxDataPoints: DefaultChunkDataPoints},
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
			// The scraper asks for gzip itself (--scrape.accept-gzip) and
			// decompresses what a target compressed whether asked or not.
			DisableCompression: true,
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
	s.loadStarts()
	defer s.saveStarts()
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
		if s.saveEvery > 0 && start.Sub(s.lastSave) >= s.saveEvery {
			s.saveStarts()
		}
		next := s.target.Interval - time.Since(start)
		if next < 0 {
			next = 0
		}
		timer.Reset(next)
	}
}

// scrapeOnce scrapes, filters, converts and hands the result to the sink.
// The response body is parsed as it arrives, through the parser's bounded
// buffer, and the scrape is encoded and handed over in chunks of bounded
// size: neither the body nor the whole OTLP request is ever held in memory.
func (s *scraper) scrapeOnce(ctx context.Context, now time.Time) {
	job := s.target.Job
	ctx, cancel := context.WithTimeout(ctx, s.target.Timeout)
	defer cancel()
	jr := s.rules().Job(job)
	if s.conv == nil || s.convLimit != jr.SeriesLimit() {
		s.conv = promotlp.New(promotlp.Options{SeriesLimit: jr.SeriesLimit(), TargetLabels: targetLabels})
		s.convLimit = jr.SeriesLimit()
		s.conv.Restore(s.restore)
		s.restore = nil
	}
	resp, err := s.get(ctx)
	if err != nil {
		s.unreachable(ctx, now, err)
		return
	}
	defer resp.Body.Close()
	raw, err := s.decoded(resp)
	if err != nil {
		s.unreachable(ctx, now, err)
		return
	}
	s.conv.Begin(now)
	consts := jr.ConstLabels()
	scraped, kept := 0, 0
	// The limit applies to the decompressed bytes: a small compressed body
	// can expand without bound.
	body := &limitedReader{r: raw, n: maxBody}
	format := promtext.FormatFromContentType(resp.Header.Get("Content-Type"))
	// A sample line that is byte for byte the one a known series had in the
	// last scrape is that series again: the parser skips its labels and the
	// rules are not asked again (the converter recognises the line by a hash
	// of its name and labels as written). What a line became depends on the
	// rules and the format, so the converter forgets it when they change.
	if jr != s.keysRules || format != s.keysFormat {
		s.conv.ForgetKeys()
		s.keysRules, s.keysFormat = jr, format
	}
	s.parser.SkipLabels = s.conv.Known
	perr := s.parser.ParseReader(body, format, func(smp *promtext.Sample) error {
		scraped++
		if smp.LabelsSkipped {
			kept++
			s.conv.AddKnown(smp)
			return nil
		}
		if !jr.Keep(smp) {
			return nil
		}
		kept++
		s.consts = missingLabels(s.consts[:0], consts, smp.Labels)
		s.conv.Add(smp, s.consts)
		return nil
	})
	dur := time.Since(now)
	s.m.scrapeDuration.WithLabelValues(job, s.target.instance()).Set(dur.Seconds())
	if s.report {
		s.addReport(now, perr == nil, dur, scraped, kept, s.conv.NewSamples())
	}
	// What was parsed before an error is exported all the same; a cut-off
	// scrape is partial: the series it did not reach are not forgotten.
	chunk := s.chunk
	chunk.Partial = perr != nil
	out, stats, sinkErr := s.conv.FinishChunks(s.out, s.resource, s.scope, chunk, s.sink)
	s.out = out
	s.m.samplesScraped.WithLabelValues(job).Add(float64(scraped))
	s.m.samplesKept.WithLabelValues(job).Add(float64(kept))
	s.m.samplesDropped.WithLabelValues(job, "rule").Add(float64(scraped - kept))
	s.m.samplesDropped.WithLabelValues(job, "series_limit").Add(float64(stats.DroppedOverLimit))
	s.m.series.WithLabelValues(job, s.target.instance()).Set(float64(stats.Series))
	if stats.Restored > 0 || stats.RestoreResets > 0 {
		s.m.startsRestored.WithLabelValues(job, "kept").Add(float64(stats.Restored))
		s.m.startsRestored.WithLabelValues(job, "reset").Add(float64(stats.RestoreResets))
		s.log.Info("start times restored", "kept", stats.Restored, "reset", stats.RestoreResets)
	}
	if stats.LimitHit {
		s.m.limitHit.WithLabelValues(job).Inc()
		s.log.Warn("series limit reached", "limit", s.convLimit, "dropped", stats.DroppedOverLimit)
	}
	var pe *promtext.ParseError
	switch {
	case perr == nil:
		s.m.scrapes.WithLabelValues(job, "success").Inc()
		s.m.up.WithLabelValues(job, s.target.instance()).Set(1)
	case errors.As(perr, &pe):
		// The rest of the payload is lost for this scrape and the scrape
		// counts as failed.
		s.m.scrapes.WithLabelValues(job, "parse_error").Inc()
		s.m.up.WithLabelValues(job, s.target.instance()).Set(0)
		s.log.Warn("scrape partly unparseable", "err", perr.Error())
	default:
		s.failed(ctx, fmt.Errorf("reading the response: %w", perr), dur)
	}
	if sinkErr != nil {
		s.log.Error("cannot queue scraped data", "err", sinkErr.Error())
	}
}

// loadStarts reads the target's start-time state file, if any; a damaged one
// is ignored (a log line and start_state_corrupt_total).
func (s *scraper) loadStarts() {
	s.lastSave = time.Now()
	if s.startsFile == "" {
		return
	}
	starts, err := readStarts(s.startsFile)
	if err != nil {
		s.m.startsCorrupt.Inc()
		s.log.Warn("ignoring the start-time state file", "file", s.startsFile, "err", err.Error())
		return
	}
	s.restore = starts
}

// saveStarts writes the target's start-time state file.
func (s *scraper) saveStarts() {
	s.lastSave = time.Now()
	if s.startsFile == "" || s.conv == nil {
		return
	}
	s.starts = s.conv.Starts(s.starts[:0])
	if err := writeStarts(s.startsFile, s.starts); err != nil {
		s.log.Warn("cannot write the start-time state file", "file", s.startsFile, "err", err.Error())
	}
}

// The series Prometheus adds to every scrape of a target (named and labelled
// as a direct scrape stores them: job and instance are the resource's
// service.name and service.instance.id).
const (
	reportUp            = "up"
	reportDuration      = "scrape_duration_seconds"
	reportScraped       = "scrape_samples_scraped"
	reportPostRelabel   = "scrape_samples_post_metric_relabeling"
	reportSeriesAdded   = "scrape_series_added"
	reportHelpUp        = "1 if the target was scraped successfully, 0 otherwise."
	reportHelpDuration  = "Duration of the scrape in seconds."
	reportHelpScraped   = "Samples the target exposed."
	reportHelpPostRelab = "Samples left after the filter rules."
	reportHelpAdded     = "Samples of series new in this scrape (Prometheus: the approximate number of new series)."
)

// addReport adds the report series of a scrape to the converter, as gauges
// without attributes, at the scrape's time.
func (s *scraper) addReport(now time.Time, up bool, dur time.Duration, scraped, kept, added int) {
	upValue := 0.0
	if up {
		upValue = 1
	}
	for _, r := range []struct {
		name, help string
		v          float64
	}{
		{reportUp, reportHelpUp, upValue},
		{reportDuration, reportHelpDuration, dur.Seconds()},
		{reportScraped, reportHelpScraped, float64(scraped)},
		{reportPostRelabel, reportHelpPostRelab, float64(kept)},
		{reportSeriesAdded, reportHelpAdded, float64(added)},
	} {
		s.sample = promtext.Sample{
			Family: []byte(r.name), Name: []byte(r.name), Type: promtext.TypeGauge,
			Value: r.v, TimestampMs: now.UnixMilli(), HasTimestamp: true, Help: []byte(r.help),
		}
		s.conv.Add(&s.sample, nil)
	}
}

// targetLabels are the labels Prometheus's OTLP translation sets from the
// resource (service.name, service.instance.id): a target's own job or instance
// label arrives as exported_job or exported_instance, as with a direct scrape.
var targetLabels = []string{"job", "instance"}

// missingLabels appends to dst the labels of consts that labels does not have
// (a label with an empty value is absent, as in Prometheus): constLabels are
// added to a series unless it has the label, never overwrite it.
func missingLabels(dst, consts, labels []promtext.Label) []promtext.Label {
	for _, c := range consts {
		has := false
		for i := range labels {
			if len(labels[i].Value) != 0 && bytes.Equal(labels[i].Name, c.Name) {
				has = true
				break
			}
		}
		if !has {
			dst = append(dst, c)
		}
	}
	return dst
}

// unreachable ends a scrape that got no payload to parse: it is recorded as
// failed and, with report, exported as up 0 and the other report series; the
// target's series are not forgotten (a partial scrape).
func (s *scraper) unreachable(ctx context.Context, now time.Time, err error) {
	dur := time.Since(now)
	s.m.scrapeDuration.WithLabelValues(s.target.Job, s.target.instance()).Set(dur.Seconds())
	s.failed(ctx, err, dur)
	if !s.report {
		return
	}
	s.conv.Begin(now)
	s.addReport(now, false, dur, 0, 0, 0)
	chunk := s.chunk
	chunk.Partial = true
	out, _, sinkErr := s.conv.FinishChunks(s.out, s.resource, s.scope, chunk, s.sink)
	s.out = out
	if sinkErr != nil {
		s.log.Error("cannot queue scraped data", "err", sinkErr.Error())
	}
}

// failed records a scrape that failed for another reason than a malformed
// payload.
func (s *scraper) failed(ctx context.Context, err error, dur time.Duration) {
	s.m.scrapes.WithLabelValues(s.target.Job, "error").Inc()
	s.m.up.WithLabelValues(s.target.Job, s.target.instance()).Set(0)
	if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		s.log.Warn("scrape failed", "err", err.Error(), "duration", dur.String())
	}
}

// get sends the scrape request and returns the response of a successful
// one, whose body the caller reads and closes.
func (s *scraper) get(ctx context.Context) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.target.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", promtext.AcceptHeader)
	if s.acceptGzip {
		req.Header.Set("Accept-Encoding", "gzip")
	} else {
		req.Header.Set("Accept-Encoding", "identity")
	}
	req.Header.Set("User-Agent", "trellis-otel-shoot-scraper/"+version.Get().Version)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(s.target.Timeout.Seconds(), 'f', -1, 64))
	if s.target.BearerTokenFile != "" {
		// Read at every scrape: projected service account tokens rotate.
		tok, err := os.ReadFile(s.target.BearerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("bearer token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return resp, nil
}

// decoded returns the body of resp decompressed as its Content-Encoding says:
// identity or gzip (asked for with acceptGzip, or sent unasked); any other
// encoding is an error.
func (s *scraper) decoded(resp *http.Response) (io.Reader, error) {
	switch enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		return resp.Body, nil
	case "gzip", "x-gzip":
		if s.gz == nil {
			gz, err := gzip.NewReader(resp.Body)
			if err != nil {
				return nil, fmt.Errorf("gzip response: %w", err)
			}
			s.gz = gz
		} else if err := s.gz.Reset(resp.Body); err != nil {
			return nil, fmt.Errorf("gzip response: %w", err)
		}
		return s.gz, nil
	default:
		return nil, fmt.Errorf("response content encoding %q not supported (identity or gzip)", enc)
	}
}

// errBodyTooLarge ends the read of a response larger than maxBody.
var errBodyTooLarge = fmt.Errorf("response larger than %d bytes", maxBody)

// limitedReader reads at most n bytes from r and then fails with
// errBodyTooLarge if r has more.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		var b [1]byte
		n, err := l.r.Read(b[:])
		if n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}
