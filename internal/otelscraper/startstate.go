package otelscraper

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/trellis-garden/trellis/internal/promotlp"
)

// Start-time state files keep the start times of a target's cumulative
// series across restarts: one file per target in the queue directory,
// written at shutdown and every --state.save-interval, read when the
// target's scrape loop starts.
//
// Format: the 8-byte magic, the number of entries (uint32), the entries (ID,
// start time in ns, last value as float64 bits: 3 x uint64), then the CRC-32C
// of everything before it; little endian. A file that is too large, short,
// or whose checksum does not match is ignored.
const (
	startsMagic      = "TRSTART1"
	startsPrefix     = "starts-"
	startsSuffix     = ".bin"
	startsEntrySize  = 24
	maxStartsEntries = 1 << 20 // 24 MiB: far above any seriesLimit in use
	// staleStartsAge: files of targets that did not come back within it are
	// deleted at start.
	staleStartsAge = 24 * time.Hour
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorruptStarts is a damaged start-time state file.
var errCorruptStarts = errors.New("damaged start-time state file")

// startsPath is the state file of the target with key in dir.
func startsPath(dir, key string) string {
	h := fnv.New64a()
	h.Write([]byte(key))
	return filepath.Join(dir, startsPrefix+strconv.FormatUint(h.Sum64(), 16)+startsSuffix)
}

// encodeStarts returns the file content for starts.
func encodeStarts(starts []promotlp.SeriesStart) []byte {
	if len(starts) > maxStartsEntries {
		starts = starts[:maxStartsEntries]
	}
	b := make([]byte, 0, len(startsMagic)+4+len(starts)*startsEntrySize+4)
	b = append(b, startsMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(starts)))
	for _, s := range starts {
		b = binary.LittleEndian.AppendUint64(b, s.ID)
		b = binary.LittleEndian.AppendUint64(b, s.StartNs)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.Last))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeStarts parses a state file's content.
func decodeStarts(b []byte) ([]promotlp.SeriesStart, error) {
	head := len(startsMagic) + 4
	if len(b) < head+4 || string(b[:len(startsMagic)]) != startsMagic {
		return nil, fmt.Errorf("%w: no header", errCorruptStarts)
	}
	n := binary.LittleEndian.Uint32(b[len(startsMagic):])
	if n > maxStartsEntries || len(b) != head+int(n)*startsEntrySize+4 {
		return nil, fmt.Errorf("%w: %d entries in %d bytes", errCorruptStarts, n, len(b))
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorruptStarts)
	}
	out := make([]promotlp.SeriesStart, n)
	for i := range out {
		e := body[head+i*startsEntrySize:]
		out[i] = promotlp.SeriesStart{
			ID:      binary.LittleEndian.Uint64(e),
			StartNs: binary.LittleEndian.Uint64(e[8:]),
			Last:    math.Float64frombits(binary.LittleEndian.Uint64(e[16:])),
		}
	}
	return out, nil
}

// readStarts reads a state file; a missing file is no error (nil state).
func readStarts(path string) ([]promotlp.SeriesStart, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	maxSize := int64(len(startsMagic) + 4 + maxStartsEntries*startsEntrySize + 4)
	b, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > maxSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", errCorruptStarts, maxSize)
	}
	return decodeStarts(b)
}

// writeStarts replaces a state file atomically (temporary file, fsync,
// rename).
func writeStarts(path string, starts []promotlp.SeriesStart) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(encodeStarts(starts))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// removeStaleStarts deletes the state files in dir not written for
// staleStartsAge (targets that went away) and leftover temporary files.
func removeStaleStarts(dir string, now time.Time) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, de := range des {
		name := de.Name()
		if !strings.HasPrefix(name, startsPrefix) {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue
		}
		if strings.HasSuffix(name, ".tmp") || now.Sub(info.ModTime()) > staleStartsAge {
			_ = os.Remove(filepath.Join(dir, name))
		}
	}
}
