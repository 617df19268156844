package conntrack

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// AccountingPath is nf_conntrack_acct below a procfs mount. The sysctl is per
// network namespace: the namespace of the thread that opens the file.
const AccountingPath = "sys/net/netfilter/nf_conntrack_acct"

// Accounting reports whether byte and packet counters are on (nf_conntrack_acct=1)
// for new entries. procfs is the procfs mount, usually /proc.
func Accounting(procfs string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(procfs, AccountingPath))
	if err != nil {
		return false, fmt.Errorf("read nf_conntrack_acct: %w", err)
	}
	return string(bytes.TrimSpace(b)) == "1", nil
}

// SetAccounting switches counters on or off for entries created from now on.
// It needs CAP_NET_ADMIN and a writable /proc/sys (containers usually mount it
// read-only unless privileged).
func SetAccounting(procfs string, on bool) error {
	v := []byte("0\n")
	if on {
		v = []byte("1\n")
	}
	if err := os.WriteFile(filepath.Join(procfs, AccountingPath), v, 0o644); err != nil {
		return fmt.Errorf("write nf_conntrack_acct: %w", err)
	}
	return nil
}
