//go:build linux

package otelscraper

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// dropBinaryPages unmaps the resident pages of the executable's read-only
// segments (code, read-only data, function tables) from the process with
// madvise(MADV_DONTNEED). They are clean copies of the file, so nothing is
// lost: the pages stay in the page cache, where the kernel can reclaim them,
// and any later use maps them again. Start-up (the init functions of every
// linked package) touches most of a binary this size once; the steady state
// needs a fraction of it. It returns the bytes of the mappings advised.
func dropBinaryPages() (int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe {
			continue
		}
		// Never a writable mapping: its private pages are the only copy.
		if perms := fields[1]; perms[1] != '-' || perms[3] != 'p' {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), syscall.MADV_DONTNEED); errno != 0 {
			return total, errno
		}
		total += int64(end - start)
	}
	return total, sc.Err()
}
