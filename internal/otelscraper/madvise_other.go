//go:build !linux

package otelscraper

// dropBinaryPages does nothing outside Linux.
func dropBinaryPages() (int64, error) { return 0, nil }
