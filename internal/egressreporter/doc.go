// Package egressreporter is the egress-reporter daemon: it finds a shoot's egress
// CIDRs (the Infrastructure status in the seed, probe results on the shoot's
// Nodes, a static list), merges them with hysteresis and publishes them as key
// egressCIDRs of the shoot's kube-system/shoot-info ConfigMap in Gardener's format,
// owning that key and nothing else (server-side apply). Its "probe" subcommand is
// the shoot-side DaemonSet that discovers each node's egress address with STUN or
// an HTTP echo URL (internal/egressprobe) and annotates its Node. See
// docs/egress-reporter.md.
package egressreporter
