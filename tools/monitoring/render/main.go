// Command render draws the main panels of trellis' dashboards from real data into
// PNGs for the docs (docs/img/<daemon>-dashboard.png).
//
// It runs a Prometheus server (Debian's prometheus binary, as `make monitoring`
// unpacks it) that scrapes the daemons of a running demo, whose /metrics URLs it
// reads from the demo's summary output, waits while data accumulates, then
// evaluates each dashboard's time series panels over that window with the
// Prometheus HTTP API and plots them with gonum/plot, the way the dashboard shows
// them (legend from legendFormat).
//
//	go run ./scripts/demo --duration 8m > /tmp/demo.log &
//	cd tools/monitoring && GOWORK=off go run ./render --demo-log /tmp/demo.log --wait 6m
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run() error {
	home, _ := os.UserHomeDir()
	var (
		demoLog    = flag.String("demo-log", "", "output of the running demo (its summary lists each daemon's /metrics URL)")
		prom       = flag.String("prometheus", filepath.Join(home, ".cache/trellis/tools/prometheus-deb/usr/bin/prometheus"), "Prometheus server binary")
		dashboards = flag.String("dashboards", "../../deploy/components/monitoring/dashboards", "dashboard folder")
		out        = flag.String("out", "../../docs/img", "PNG folder")
		wait       = flag.Duration("wait", 5*time.Minute, "how long to collect before drawing")
		interval   = flag.Duration("scrape-interval", 5*time.Second, "scrape interval")
		panels     = flag.Int("panels", 6, "time series panels drawn per dashboard")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if _, err := os.Stat(*prom); err != nil {
		if p, lerr := exec.LookPath("prometheus"); lerr == nil {
			*prom = p
		}
	}
	targets, err := demoTargets(*demoLog)
	if err != nil {
		return err
	}
	log.Info("targets", "n", len(targets))

	dir, err := os.MkdirTemp("", "trellis-render-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	if err := writeConfig(filepath.Join(dir, "prometheus.yml"), targets, *interval); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, *prom, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { stop(); _ = cmd.Wait() }()
	api := "http://" + addr
	start := time.Now()
	log.Info("collecting", "prometheus", api, "wait", *wait)
	select {
	case <-time.After(*wait):
	case <-ctx.Done():
		return ctx.Err()
	}
	end := time.Now()
	rateInterval := 6 * *interval
	files, err := filepath.Glob(filepath.Join(*dashboards, "*.json"))
	if err != nil {
		return err
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		path := filepath.Join(*out, name+"-dashboard.png")
		if err := draw1(ctx, api, f, path, start, end, *interval, rateInterval, *panels); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		log.Info("drawn", "dashboard", name, "png", path)
	}
	return nil
}

var targetLine = regexp.MustCompile(`^\s+([a-z][a-z0-9 -]*[a-z0-9])\s+(http://[0-9.:]+)/metrics\b`)

// demoTargets reads daemon name -> host:port from the demo's summary lines.
func demoTargets(path string) (map[string]string, error) {
	if path == "" {
		return nil, errors.New("--demo-log is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	targets := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if m := targetLine.FindStringSubmatch(l); m != nil {
			targets[strings.ReplaceAll(m[1], " ", "-")] = strings.TrimPrefix(m[2], "http://")
		}
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("%s: no /metrics URLs (is the demo running?)", path)
	}
	return targets, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// writeConfig: one job per daemon, the target labelled as Kubernetes service
// discovery would (namespace, pod); honor_labels keeps the daemons' own job,
// instance and namespace labels, as the dashboards expect.
func writeConfig(path string, targets map[string]string, interval time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\nscrape_configs:\n", interval, interval)
	names := make([]string, 0, len(targets))
	for n := range targets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  - job_name: %s\n    honor_labels: true\n    static_configs:\n      - targets: [%q]\n        labels: {namespace: demo, pod: %s-0}\n", n, targets[n], n)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

type dashboard struct {
	Title  string `json:"title"`
	Panels []struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr   string `json:"expr"`
			Legend string `json:"legendFormat"`
		} `json:"targets"`
		FieldConfig struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
		} `json:"fieldConfig"`
	} `json:"panels"`
}

var variable = regexp.MustCompile(`\$\{?([A-Za-z0-9_]+)\}?`)

func expandExpr(expr string, rate time.Duration) string {
	return variable.ReplaceAllStringFunc(expr, func(v string) string {
		switch strings.Trim(v, "${}") {
		case "__rate_interval", "__interval":
			return rate.String()
		}
		return ".*" // namespace, cluster: all
	})
}

var legendVar = regexp.MustCompile(`\{\{\s*([a-zA-Z_]+)\s*\}\}`)

type series struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

func queryRange(ctx context.Context, api, expr string, start, end time.Time, step time.Duration) ([]series, error) {
	q := url.Values{"query": {expr}, "start": {strconv.FormatInt(start.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)}, "step": {step.String()}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/api/v1/query_range?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []series `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("%s: %s", expr, body.Error)
	}
	return body.Data.Result, nil
}

// draw1 draws the first n time series panels of a dashboard, two per row.
func draw1(ctx context.Context, api, file, out string, start, end time.Time, step, rate time.Duration, n int) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return err
	}
	var plots []*plot.Plot
	for _, p := range d.Panels {
		if p.Type != "timeseries" || len(plots) == n {
			continue
		}
		pl := plot.New()
		pl.Title.Text = p.Title
		pl.Title.TextStyle.Font.Size = font.Length(11)
		pl.X.Tick.Marker = plot.TimeTicks{Format: "15:04"}
		pl.Y.Label.Text = p.FieldConfig.Defaults.Unit
		pl.Legend.Top = true
		pl.Legend.TextStyle.Font.Size = font.Length(8)
		pl.Add(plotter.NewGrid())
		i := 0
		for _, t := range p.Targets {
			res, err := queryRange(ctx, api, expandExpr(t.Expr, rate), start, end, step)
			if err != nil {
				return err
			}
			for _, s := range res {
				var xys plotter.XYs
				for _, v := range s.Values {
					ts, _ := v[0].(float64)
					vs, _ := v[1].(string)
					y, err := strconv.ParseFloat(vs, 64)
					if err != nil || math.IsNaN(y) || math.IsInf(y, 0) {
						continue
					}
					xys = append(xys, plotter.XY{X: ts, Y: y})
				}
				if len(xys) == 0 || i >= 8 {
					continue
				}
				l, err := plotter.NewLine(xys)
				if err != nil {
					return err
				}
				l.Color = palette[i%len(palette)]
				l.Width = vg.Points(1.5)
				pl.Add(l)
				pl.Legend.Add(legend(t.Legend, s.Metric), l)
				i++
			}
		}
		if i == 0 {
			pl.Title.Text += " (no data in the demo)"
		}
		plots = append(plots, pl)
	}
	if len(plots) == 0 {
		return errors.New("no time series panel")
	}
	rows := (len(plots) + 1) / 2
	w, h := 12*vg.Inch, vg.Length(rows)*3.2*vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(96), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: 2, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4, PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	grid := make([][]*plot.Plot, rows)
	for r := range grid {
		grid[r] = make([]*plot.Plot, 2)
		for c := range 2 {
			if k := r*2 + c; k < len(plots) {
				grid[r][c] = plots[k]
			}
		}
	}
	canvases := plot.Align(grid, tiles, dc)
	for r := range grid {
		for c := range grid[r] {
			if grid[r][c] != nil {
				grid[r][c].Draw(canvases[r][c])
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func legend(format string, m map[string]string) string {
	if format == "" {
		var parts []string
		for k, v := range m {
			parts = append(parts, k+"="+v)
		}
		sort.Strings(parts)
		return strings.Join(parts, ",")
	}
	return legendVar.ReplaceAllStringFunc(format, func(v string) string {
		return m[legendVar.FindStringSubmatch(v)[1]]
	})
}

var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff}, color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	color.RGBA{0xd6, 0x27, 0x28, 0xff}, color.RGBA{0x94, 0x67, 0xbd, 0xff}, color.RGBA{0x8c, 0x56, 0x4b, 0xff},
	color.RGBA{0xe3, 0x77, 0xc2, 0xff}, color.RGBA{0x7f, 0x7f, 0x7f, 0xff},
}
