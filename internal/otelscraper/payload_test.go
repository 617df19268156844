package otelscraper

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
)

// realisticCadvisorPayload renders about n series of an exposition like a busy
// node's kubelet /metrics/cadvisor: systemd cgroup driver ids
// (/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/
// cri-containerd-<64 hex>.scope), 64-hex container names, long image
// references, about 430 bytes a line (13 MB for 30k series). Timestamps on the
// container_* families as cAdvisor writes them, except the spec families;
// floats with fractions for CPU seconds; 40 histogram series (12 buckets) and
// 20 summary series (3 quantiles) as a kubelet or an application adds them.
// The content is deterministic; values move with scrape (counters rise, gauges
// vary) so successive scrapes are not byte-identical.
func realisticCadvisorPayload(n, scrape int) []byte {
	type fam struct {
		name, typ, extra string
		float, stamped   bool
	}
	families := []fam{
		{"container_cpu_usage_seconds_total", "counter", `cpu="total",`, true, true},
		{"container_cpu_user_seconds_total", "counter", "", true, true},
		{"container_cpu_system_seconds_total", "counter", "", true, true},
		{"container_cpu_cfs_periods_total", "counter", "", false, true},
		{"container_cpu_cfs_throttled_periods_total", "counter", "", false, true},
		{"container_cpu_cfs_throttled_seconds_total", "counter", "", true, true},
		{"container_memory_working_set_bytes", "gauge", "", false, true},
		{"container_memory_rss", "gauge", "", false, true},
		{"container_memory_cache", "gauge", "", false, true},
		{"container_memory_usage_bytes", "gauge", "", false, true},
		{"container_memory_swap", "gauge", "", false, true},
		{"container_memory_mapped_file", "gauge", "", false, true},
		{"container_memory_failcnt", "counter", "", false, true},
		{"container_memory_failures_total", "counter", `failure_type="pgfault",scope="container",`, false, true},
		{"container_fs_reads_bytes_total", "counter", `device="/dev/nvme0n1",`, false, true},
		{"container_fs_writes_bytes_total", "counter", `device="/dev/nvme0n1",`, false, true},
		{"container_fs_reads_total", "counter", `device="/dev/nvme0n1",`, false, true},
		{"container_fs_writes_total", "counter", `device="/dev/nvme0n1",`, false, true},
		{"container_fs_usage_bytes", "gauge", `device="/dev/nvme0n1p1",`, false, true},
		{"container_fs_limit_bytes", "gauge", `device="/dev/nvme0n1p1",`, false, true},
		{"container_network_receive_bytes_total", "counter", `interface="eth0",`, false, true},
		{"container_network_transmit_bytes_total", "counter", `interface="eth0",`, false, true},
		{"container_network_receive_packets_total", "counter", `interface="eth0",`, false, true},
		{"container_network_transmit_packets_total", "counter", `interface="eth0",`, false, true},
		{"container_processes", "gauge", "", false, true},
		{"container_threads", "gauge", "", false, true},
		{"container_file_descriptors", "gauge", "", false, true},
		{"container_last_seen", "gauge", "", false, true},
		{"container_spec_memory_limit_bytes", "gauge", "", false, false},
		{"container_spec_cpu_shares", "gauge", "", false, false},
	}
	const histograms, summaries = 40, 20
	containers := max(1, (n-histograms-summaries)/len(families))
	rng := rand.New(rand.NewPCG(uint64(n), 7)) // identities: same for every scrape
	type ctr struct{ id, name, image, ns, pod, container string }
	namespaces := []string{"kube-system", "shop-frontend", "shop-backend", "monitoring", "garden-ingress"}
	cs := make([]ctr, containers)
	hex := func(k int) string {
		const digits = "0123456789abcdef"
		b := make([]byte, k)
		for i := range b {
			b[i] = digits[rng.IntN(16)]
		}
		return string(b)
	}
	for i := range cs {
		uid := hex(8) + "_" + hex(4) + "_" + hex(4) + "_" + hex(4) + "_" + hex(12)
		cid := hex(64)
		qos := []string{"burstable", "besteffort", "burstable"}[i%3]
		app := fmt.Sprintf("app-%d", i/4)
		cs[i] = ctr{
			id:        "/kubepods.slice/kubepods-" + qos + ".slice/kubepods-" + qos + "-pod" + uid + ".slice/cri-containerd-" + cid + ".scope",
			name:      cid,
			image:     fmt.Sprintf("europe-docker.pkg.dev/gardener-project/releases/%s/%s:v1.%d.%d", namespaces[i%len(namespaces)], app, i%17, i%5),
			ns:        namespaces[i%len(namespaces)],
			pod:       fmt.Sprintf("%s-%s-%s", app, hex(10), hex(5)),
			container: fmt.Sprintf("container-%d", i%4),
		}
	}
	const stamp = int64(1764900000000)
	ts := strconv.FormatInt(stamp+int64(scrape)*15000, 10)
	var b bytes.Buffer
	b.Grow(n * 440)
	for fi, f := range families {
		fmt.Fprintf(&b, "# HELP %s cAdvisor metric %s.\n# TYPE %s %s\n", f.name, f.name, f.name, f.typ)
		for i, c := range cs {
			fmt.Fprintf(&b, `%s{%scontainer="%s",id="%s",image="%s",name="%s",namespace="%s",pod="%s"} `,
				f.name, f.extra, c.container, c.id, c.image, c.name, c.ns, c.pod)
			base := int64(i*31+fi*7+1) * 1000
			if f.typ == "counter" {
				base += int64(scrape) * int64(i%97+1) * 10
			} else {
				base += int64((scrape*7919 + i) % 500)
			}
			if f.float {
				b.WriteString(strconv.FormatFloat(float64(base)/997.0, 'g', -1, 64))
			} else {
				b.WriteString(strconv.FormatInt(base, 10))
			}
			if f.stamped {
				b.WriteByte(' ')
				b.WriteString(ts)
			}
			b.WriteByte('\n')
		}
	}
	bounds := []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}
	b.WriteString("# HELP kubelet_runtime_operations_duration_seconds Duration in seconds of runtime operations.\n# TYPE kubelet_runtime_operations_duration_seconds histogram\n")
	for h := 0; h < histograms; h++ {
		op := fmt.Sprintf("operation_%02d", h)
		var cum int64
		for k, le := range bounds {
			cum += int64((h+1)*(k+1)) + int64(scrape)*int64(k+1)
			fmt.Fprintf(&b, "kubelet_runtime_operations_duration_seconds_bucket{operation_type=%q,le=%q} %d\n", op, le, cum)
		}
		fmt.Fprintf(&b, "kubelet_runtime_operations_duration_seconds_sum{operation_type=%q} %g\n", op, float64(cum)*0.0173)
		fmt.Fprintf(&b, "kubelet_runtime_operations_duration_seconds_count{operation_type=%q} %d\n", op, cum)
	}
	b.WriteString("# HELP go_gc_duration_like_seconds A summary of pause durations.\n# TYPE go_gc_duration_like_seconds summary\n")
	for s := 0; s < summaries; s++ {
		for _, q := range []string{"0.5", "0.9", "0.99"} {
			fmt.Fprintf(&b, "go_gc_duration_like_seconds{component=\"c%02d\",quantile=%q} %g\n", s, q, 0.0001*float64(s+1))
		}
		fmt.Fprintf(&b, "go_gc_duration_like_seconds_sum{component=\"c%02d\"} %g\n", s, 0.01*float64(s+scrape+1))
		fmt.Fprintf(&b, "go_gc_duration_like_seconds_count{component=\"c%02d\"} %d\n", s, 100*(s+scrape+1))
	}
	return b.Bytes()
}
