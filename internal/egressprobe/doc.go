// Package egressprobe discovers the public address a host's outbound traffic
// leaves from: a STUN binding request (RFC 8489, its own small codec) to a server that
// echoes the source address it saw (XOR-MAPPED-ADDRESS), or an HTTP GET to an echo
// URL that answers with the caller's address as plain text. It knows nothing about
// Kubernetes or any daemon; probetest holds loopback servers for tests.
package egressprobe
