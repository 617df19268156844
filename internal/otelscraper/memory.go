package otelscraper

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Defaults of the memory flags.
const (
	// DefaultMemoryLimit is --memory.limit: a soft limit for the Go runtime
	// at 90% of the container's memory limit, none without one.
	DefaultMemoryLimit = "auto"
	// autoLimitPercent is the share of the cgroup limit "auto" takes: room
	// for what the Go runtime does not account (the mapped binary, C
	// allocations of the resolver).
	autoLimitPercent = 90
	// DefaultGCPercent is --memory.gc-percent. The daemon allocates little
	// per scrape (buffers and converter state are reused), so collecting at
	// 1.5 times the live heap rather than twice costs little CPU.
	DefaultGCPercent = 50
)

// memoryLimit resolves a --memory.limit value to bytes (0: no limit):
// "auto" is 90% of the cgroup memory limit, or no limit without one; "off"
// or "0" is no limit; "<n>%" is that share of the cgroup limit (an error
// without one); anything else is a quantity such as 200Mi or 1G.
// cgroupRoot is /sys/fs/cgroup, selfCgroup /proc/self/cgroup (tests pass
// others).
func memoryLimit(v, cgroupRoot, selfCgroup string) (int64, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "off" || v == "0":
		return 0, nil
	case v == "auto":
		limit, ok := cgroupMemoryLimit(cgroupRoot, selfCgroup)
		if !ok {
			return 0, nil
		}
		return limit / 100 * autoLimitPercent, nil
	case strings.HasSuffix(v, "%"):
		pct, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
		if err != nil || !(pct > 0 && pct <= 100) {
			return 0, fmt.Errorf("%q: want a percentage in (0, 100]", v)
		}
		limit, ok := cgroupMemoryLimit(cgroupRoot, selfCgroup)
		if !ok {
			return 0, fmt.Errorf("%q: no cgroup memory limit to take a share of", v)
		}
		return int64(float64(limit) * pct / 100), nil
	}
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return 0, fmt.Errorf("%q: want auto, off, a percentage or a quantity such as 200Mi: %w", v, err)
	}
	n, ok := q.AsInt64()
	if !ok || n < 0 {
		return 0, fmt.Errorf("%q: out of range", v)
	}
	return n, nil
}

// unlimited is the smallest cgroup v1 limit that means "no limit" (the
// kernel reports the largest page-aligned int64).
const unlimited = math.MaxInt64 / 2

// cgroupMemoryLimit returns the memory limit of the cgroup of this process
// (cgroup v2 memory.max, else v1 memory.limit_in_bytes), looked up under
// the process's own cgroup path first and at the root of cgroupRoot (a
// container's cgroup namespace) next.
func cgroupMemoryLimit(cgroupRoot, selfCgroup string) (int64, bool) {
	var candidates []string
	if f, err := os.Open(selfCgroup); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// hierarchy-id:controllers:path
			parts := strings.SplitN(sc.Text(), ":", 3)
			if len(parts) != 3 {
				continue
			}
			switch {
			case parts[0] == "0" && parts[1] == "":
				candidates = append(candidates, filepath.Join(cgroupRoot, parts[2], "memory.max"))
			case hasController(parts[1], "memory"):
				candidates = append(candidates, filepath.Join(cgroupRoot, "memory", parts[2], "memory.limit_in_bytes"))
			}
		}
		_ = f.Close()
	}
	candidates = append(candidates, filepath.Join(cgroupRoot, "memory.max"), filepath.Join(cgroupRoot, "memory", "memory.limit_in_bytes"))
	for _, c := range candidates {
		b, err := os.ReadFile(c)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= unlimited {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// applyMemorySettings sets the Go runtime's soft memory limit and GC
// percentage from the flags; the GOMEMLIMIT and GOGC environment variables,
// when set, win. It returns what it set, for the log.
func (o *Options) applyMemorySettings() (limit int64, gcPercent int, err error) {
	if limit, err = memoryLimit(o.MemoryLimit, "/sys/fs/cgroup", "/proc/self/cgroup"); err != nil {
		return 0, 0, fmt.Errorf("--memory.limit: %w", err)
	}
	if limit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(limit)
	}
	gcPercent = o.GCPercent
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	return limit, gcPercent, nil
}
