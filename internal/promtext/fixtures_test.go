package promtext

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// This file generates realistic text format payloads: cAdvisor (many series,
// long label values, timestamps), node-exporter (summaries, a histogram,
// NaN and infinities, a HELP with escapes) and kubelet (histograms with
// labels, escaped label values). They are generated rather than stored so
// that the benchmark can ask for any size.

// expo builds an exposition in the text format the way client_golang writes
// it: HELP, TYPE, then sample lines with values formatted by
// strconv.AppendFloat(v, 'g', -1, 64).
type expo struct {
	b      []byte
	series int
}

func (e *expo) family(name, typ, help string) {
	e.b = append(e.b, "# HELP "+name+" "+help+"\n# TYPE "+name+" "+typ+"\n"...)
}

// sample appends one line; labels are name, value pairs, values already
// escaped; ts < 0 means no timestamp.
func (e *expo) sample(name string, value float64, ts int64, labels ...string) {
	e.b = append(e.b, name...)
	if len(labels) > 0 {
		e.b = append(e.b, '{')
		for i := 0; i < len(labels); i += 2 {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.b = append(e.b, labels[i]+`="`+labels[i+1]+`"`...)
		}
		e.b = append(e.b, '}')
	}
	e.b = append(e.b, ' ')
	e.b = appendGoFloat(e.b, value)
	if ts >= 0 {
		e.b = append(e.b, ' ')
		e.b = strconv.AppendInt(e.b, ts, 10)
	}
	e.b = append(e.b, '\n')
	e.series++
}

// appendGoFloat formats like client_golang's text encoder.
func appendGoFloat(b []byte, f float64) []byte {
	switch {
	case f == 1:
		return append(b, '1')
	case f == 0:
		return append(b, '0')
	case f == -1:
		return append(b, "-1"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// histogram appends buckets (cumulative, with +Inf), _sum and _count.
func (e *expo) histogram(name string, rng *rand.Rand, bounds []string, labels ...string) {
	count := 0.0
	for _, le := range bounds {
		count += float64(rng.IntN(50))
		e.sample(name+"_bucket", count, -1, append(labels[:len(labels):len(labels)], "le", le)...)
	}
	e.sample(name+"_bucket", count, -1, append(labels[:len(labels):len(labels)], "le", "+Inf")...)
	e.sample(name+"_sum", count*rng.Float64()*3, -1, labels...)
	e.sample(name+"_count", count, -1, labels...)
}

// cgroup is one cAdvisor container (or pod-level cgroup, container="").
type cgroup struct {
	container, id, image, name, namespace, pod string
	podLevel                                   bool
}

// cadvisorPayload returns a cAdvisor-like /metrics/cadvisor payload with at
// least series series, and the exact number of series.
func cadvisorPayload(series int) ([]byte, int) {
	rng := rand.New(rand.NewPCG(1, 2))
	type fam struct{ name, typ, help, extra string }
	perContainer := []fam{
		{"container_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed in seconds.", "cpu"},
		{"container_cpu_user_seconds_total", "counter", "Cumulative user cpu time consumed in seconds.", ""},
		{"container_cpu_system_seconds_total", "counter", "Cumulative system cpu time consumed in seconds.", ""},
		{"container_cpu_cfs_periods_total", "counter", "Number of elapsed enforcement period intervals.", ""},
		{"container_cpu_cfs_throttled_seconds_total", "counter", "Total time duration the container has been throttled.", ""},
		{"container_memory_working_set_bytes", "gauge", "Current working set in bytes.", ""},
		{"container_memory_usage_bytes", "gauge", "Current memory usage in bytes, including all memory regardless of when it was accessed", ""},
		{"container_memory_rss", "gauge", "Size of RSS in bytes.", ""},
		{"container_memory_cache", "gauge", "Number of bytes of page cache memory.", ""},
		{"container_memory_failures_total", "counter", "Cumulative count of memory allocation failures.", "failure"},
		{"container_fs_reads_bytes_total", "counter", "Cumulative count of bytes read", "device"},
		{"container_fs_writes_bytes_total", "counter", "Cumulative count of bytes written", "device"},
		{"container_spec_memory_limit_bytes", "gauge", "Memory limit for the container.", ""},
		{"container_spec_cpu_shares", "gauge", "CPU share of the container.", ""},
		{"container_last_seen", "gauge", "Last time a container was seen by the exporter", ""},
		{"container_start_time_seconds", "gauge", "Start time of the container since unix epoch in seconds.", ""},
		{"container_threads", "gauge", "Number of threads running inside the container", ""},
	}
	perPod := []fam{
		{"container_network_receive_bytes_total", "counter", "Cumulative count of bytes received", "interface"},
		{"container_network_transmit_bytes_total", "counter", "Cumulative count of bytes transmitted", "interface"},
		{"container_network_receive_packets_total", "counter", "Cumulative count of packets received", "interface"},
		{"container_network_transmit_packets_total", "counter", "Cumulative count of packets transmitted", "interface"},
		{"container_network_receive_errors_total", "counter", "Cumulative count of errors encountered while receiving", "interface"},
		{"container_network_receive_packets_dropped_total", "counter", "Cumulative count of packets dropped while receiving", "interface"},
	}
	namespaces := []string{"kube-system", "garden", "shoot--core--prod", "monitoring", "default", "istio-system"}
	images := []string{
		"europe-docker.pkg.dev/gardener-project/releases/gardener/node-agent:v1.110.0",
		"registry.k8s.io/kube-proxy:v1.31.4",
		"quay.io/prometheus/node-exporter:v1.8.2",
		"docker.io/library/nginx:1.27.3",
		"ghcr.io/example/app@sha256:4c1e997385b8fb4ad4d1d3c7e5c1a2b9b0f0c3e8e5b7e2c0a1d9f8e7c6b5a4f3",
	}
	hex := func(n int) string {
		const digits = "0123456789abcdef"
		b := make([]byte, n)
		for i := range b {
			b[i] = digits[rng.IntN(16)]
		}
		return string(b)
	}
	seriesOf := func(c cgroup) int {
		n := len(perContainer) + 1 // container_memory_failures_total has two failure types
		if c.podLevel {
			n += len(perPod) * 2 // eth0 and tunl0
		}
		return n
	}
	var cgroups []cgroup
	total := 0
	for p := 0; total < series; p++ {
		ns := namespaces[p%len(namespaces)]
		podName := fmt.Sprintf("app-%s-%s", hex(10), hex(5))
		uid := fmt.Sprintf("%s_%s_%s_%s_%s", hex(8), hex(4), hex(4), hex(4), hex(12))
		podID := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uid + ".slice"
		pod := cgroup{id: podID, namespace: ns, pod: podName, podLevel: true}
		cgroups = append(cgroups, pod)
		total += seriesOf(pod)
		for c := 0; c < 1+p%3 && total < series; c++ {
			cid := hex(64)
			image := images[rng.IntN(len(images))]
			if p%997 == 5 {
				image = `weird\\image \"quoted\"` // escapes, rarely
			}
			cg := cgroup{
				container: fmt.Sprintf("c%d", c), id: podID + "/cri-containerd-" + cid + ".scope",
				image: image, name: cid, namespace: ns, pod: podName,
			}
			cgroups = append(cgroups, cg)
			total += seriesOf(cg)
		}
	}
	const ts = 1735689600123
	var e expo
	labels := func(c cgroup, extraName, extraValue string) []string {
		l := []string{"container", c.container}
		if extraName == "cpu" || extraName == "device" {
			l = append(l, extraName, extraValue)
		}
		if extraName == "failure" {
			l = append(l, "failure_type", extraValue)
		}
		l = append(l, "id", c.id, "image", c.image)
		if extraName == "interface" {
			l = append(l, "interface", extraValue)
		}
		l = append(l, "name", c.name, "namespace", c.namespace, "pod", c.pod)
		if extraName == "failure" {
			l = append(l, "scope", "container")
		}
		return l
	}
	for _, f := range perContainer {
		e.family(f.name, f.typ, f.help)
		for _, c := range cgroups {
			// Values as cAdvisor computes them: seconds from nanoseconds,
			// other counters and gauges from integers, times near now.
			var v float64
			switch {
			case strings.HasSuffix(f.name, "_seconds_total"):
				v = float64(rng.Int64N(1e13)) / 1e9
			case strings.HasSuffix(f.name, "_seconds"), f.name == "container_last_seen":
				v = float64(1735689600 - rng.IntN(1e7))
			default:
				v = float64(rng.Int64N(1 << 34))
			}
			switch f.extra {
			case "cpu":
				e.sample(f.name, v, ts, labels(c, "cpu", "total")...)
			case "device":
				e.sample(f.name, v, ts, labels(c, "device", "/dev/nvme0n1")...)
			case "failure":
				e.sample(f.name, v, ts, labels(c, "failure", "pgfault")...)
				e.sample(f.name, v, ts, labels(c, "failure", "pgmajfault")...)
			default:
				e.sample(f.name, v, ts, labels(c, "", "")...)
			}
		}
	}
	for _, f := range perPod {
		e.family(f.name, f.typ, f.help)
		for _, c := range cgroups {
			if !c.podLevel {
				continue
			}
			for _, iface := range []string{"eth0", "tunl0"} {
				e.sample(f.name, float64(rng.Int64N(1<<40)), ts, labels(c, "interface", iface)...)
			}
		}
	}
	return e.b, e.series
}

// nodeExporterPayload returns a node-exporter-like payload.
func nodeExporterPayload() ([]byte, int) {
	rng := rand.New(rand.NewPCG(3, 4))
	var e expo
	e.family("go_gc_duration_seconds", "summary", "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.")
	for _, q := range []string{"0", "0.25", "0.5", "0.75", "1"} {
		e.sample("go_gc_duration_seconds", rng.Float64()/1e4, -1, "quantile", q)
	}
	e.sample("go_gc_duration_seconds_sum", 0.123456, -1)
	e.sample("go_gc_duration_seconds_count", 4711, -1)
	e.family("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.")
	for cpu := range 8 {
		for _, mode := range []string{"idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"} {
			e.sample("node_cpu_seconds_total", rng.Float64()*1e6, -1, "cpu", strconv.Itoa(cpu), "mode", mode)
		}
	}
	for _, m := range []string{"MemAvailable", "MemFree", "MemTotal", "Buffers", "Cached", "Active", "Inactive", "SwapTotal", "SwapFree", "Dirty"} {
		name := "node_memory_" + m + "_bytes"
		e.family(name, "gauge", "Memory information field "+m+"_bytes.")
		e.sample(name, float64(rng.Int64N(1<<36)), -1)
	}
	for _, f := range []string{"avail", "size", "free", "files"} {
		name := "node_filesystem_" + f + "_bytes"
		e.family(name, "gauge", "Filesystem "+f+" in bytes.")
		for _, fs := range [][3]string{{"/dev/nvme0n1p1", "ext4", "/"}, {"tmpfs", "tmpfs", "/run"}, {"/dev/nvme1n1", "xfs", "/var/lib/kubelet"}} {
			e.sample(name, float64(rng.Int64N(1<<40)), -1, "device", fs[0], "fstype", fs[1], "mountpoint", fs[2])
		}
	}
	for _, dir := range []string{"receive", "transmit"} {
		for _, what := range []string{"bytes", "packets", "errs", "drop"} {
			name := "node_network_" + dir + "_" + what + "_total"
			e.family(name, "counter", "Network device statistic "+dir+"_"+what+".")
			for _, dev := range []string{"eth0", "lo", "tunl0", "cali1234abcd"} {
				e.sample(name, float64(rng.Int64N(1<<40)), -1, "device", dev)
			}
		}
	}
	e.family("node_load1", "gauge", "1m load average.")
	e.sample("node_load1", 0.42, -1)
	e.family("node_hwmon_temp_celsius", "gauge", "Hardware monitor for temperature (input)")
	e.sample("node_hwmon_temp_celsius", math.NaN(), -1, "chip", "platform_coretemp_0", "sensor", "temp1")
	e.sample("node_hwmon_temp_celsius", math.Inf(1), -1, "chip", "platform_coretemp_0", "sensor", "temp2")
	e.sample("node_hwmon_temp_celsius", math.Inf(-1), -1, "chip", "platform_coretemp_0", "sensor", "temp3")
	e.family("node_uname_info", "gauge", `Labeled system information as provided by the uname system call, with a \\ backslash and a \n newline.`)
	e.sample("node_uname_info", 1, -1, "domainname", "(none)", "machine", "x86_64", "nodename", "ip-10-250-0-1.eu-west-1.compute.internal",
		"release", "6.6.62-gardenlinux-cloud-amd64", "sysname", "Linux", "version", "#1 SMP PREEMPT_DYNAMIC Debian 6.6.62-0gardenlinux1 (2024-11-22)")
	e.family("node_scrape_collector_duration_seconds", "gauge", "node_exporter: Duration of a collector scrape.")
	for _, c := range []string{"cpu", "diskstats", "filesystem", "meminfo", "netdev", "conntrack"} {
		e.sample("node_scrape_collector_duration_seconds", rng.Float64()/100, -1, "collector", c)
	}
	e.family("promhttp_metric_handler_requests_total", "counter", "Total number of scrapes by HTTP status code.")
	for _, code := range []string{"200", "500", "503"} {
		e.sample("promhttp_metric_handler_requests_total", float64(rng.IntN(1e5)), -1, "code", code)
	}
	e.family("node_textfile_scrape_duration_seconds", "histogram", "Duration of textfile scrapes.")
	e.histogram("node_textfile_scrape_duration_seconds", rng, []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"})
	e.family("node_untyped_example", "untyped", "An untyped metric.")
	e.sample("node_untyped_example", -0.5, -1, "kind", "x")
	return e.b, e.series
}

// kubeletPayload returns a kubelet-like /metrics payload.
func kubeletPayload() ([]byte, int) {
	rng := rand.New(rand.NewPCG(5, 6))
	var e expo
	e.family("kubelet_pod_start_duration_seconds", "histogram", "[ALPHA] Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run")
	e.histogram("kubelet_pod_start_duration_seconds", rng, []string{"0.5", "1", "2", "3", "4", "5", "6", "8", "10", "20", "30", "45", "60", "120", "180", "240", "300", "360", "480", "600", "900", "1200", "1800", "2700", "3600"})
	short := []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"}
	e.family("kubelet_runtime_operations_duration_seconds", "histogram", "[ALPHA] Duration in seconds of runtime operations. Broken down by operation type.")
	for _, op := range []string{"container_status", "create_container", "exec_sync", "list_containers", "list_podsandbox", "podsandbox_status", "start_container", "version"} {
		e.histogram("kubelet_runtime_operations_duration_seconds", rng, short, "operation_type", op)
	}
	e.family("rest_client_request_duration_seconds", "histogram", "[ALPHA] Request latency in seconds. Broken down by verb, and host.")
	for _, verb := range []string{"GET", "PATCH", "POST", "PUT"} {
		e.histogram("rest_client_request_duration_seconds", rng, short, "host", "api.shoot.example.com:443", "verb", verb)
	}
	e.family("kubelet_image_pull_duration_seconds", "histogram", "[ALPHA] Duration in seconds to pull an image.")
	for _, size := range []string{"0-10MB", "10MB-100MB", "100MB-500MB"} {
		e.histogram("kubelet_image_pull_duration_seconds", rng, []string{"0.5", "1", "5", "10", "20", "30", "60", "120", "180", "300"}, "image_size_in_bytes", size)
	}
	e.family("rest_client_requests_total", "counter", "[ALPHA] Number of HTTP requests, partitioned by status code, method, and host.")
	for _, code := range []string{"200", "201", "404", "409", "<error>"} {
		e.sample("rest_client_requests_total", float64(rng.IntN(1e6)), -1, "code", code, "host", "api.shoot.example.com:443", "method", "GET")
	}
	e.family("kubelet_volume_stats_used_bytes", "gauge", "[ALPHA] Number of used bytes in the volume")
	for i := range 20 {
		e.sample("kubelet_volume_stats_used_bytes", float64(rng.Int64N(1<<35)), -1, "namespace", "ns"+strconv.Itoa(i%4), "persistentvolumeclaim", "data-db-"+strconv.Itoa(i))
	}
	e.family("kubelet_running_pods", "gauge", "[ALPHA] Number of pods that have a running pod sandbox")
	e.sample("kubelet_running_pods", 42, -1)
	e.family("kubelet_pleg_relist_interval_summary_seconds", "summary", "A summary with labels.")
	for _, q := range []string{"0.5", "0.9", "0.99"} {
		e.sample("kubelet_pleg_relist_interval_summary_seconds", rng.Float64(), -1, "node", "n1", "quantile", q)
	}
	e.sample("kubelet_pleg_relist_interval_summary_seconds_sum", 1234.5, -1, "node", "n1")
	e.sample("kubelet_pleg_relist_interval_summary_seconds_count", 999, -1, "node", "n1")
	e.family("kubelet_errors_total", "counter", "Errors with awkward label values.")
	e.sample("kubelet_errors_total", 3, -1, "error", `dial tcp: lookup \"api\" failed\ntwice`, "path", `C:\\kubelet\\pods`)
	return e.b, e.series
}
