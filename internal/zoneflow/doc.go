// Package zoneflow is the zone-flow-tracer daemon: it reads its node's conntrack
// table (dumps for long-lived flows, DESTROY events for short ones), resolves
// each address to a zone, namespace and workload from Nodes and this node's Pods
// (or to a CIDR class), counts each byte once cluster-wide by the counting rule
// in docs/zone-flow-tracer.md, and exports bytes, packets and estimated cost as
// Prometheus counters and the top talkers on /flows.
package zoneflow
