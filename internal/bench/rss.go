package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// peakRSS returns the process's peak resident set size in MiB, VmHWM of
// /proc/self/status (Linux, proc(5)). The embedded broker, the loopback
// receivers and the raw baselines run in the same process, so the figure
// covers all of them.
func peakRSS() (float64, error) {
	return readHWM("/proc/self/status")
}

// processPeakRSS returns the peak resident set size of process pid in MiB,
// VmHWM of /proc/<pid>/status.
func processPeakRSS(pid int) (float64, error) {
	return readHWM(fmt.Sprintf("/proc/%d/status", pid))
}

func readHWM(file string) (float64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, fmt.Errorf("peak RSS: %w", err)
	}
	mib, err := parseHWM(b)
	if err != nil {
		return 0, fmt.Errorf("%w in %s", err, file)
	}
	return mib, nil
}

// parseHWM reads VmHWM (in kB) from the text of a /proc/<pid>/status.
func parseHWM(status []byte) (float64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
		if err != nil {
			return 0, fmt.Errorf("peak RSS: VmHWM %q: %w", v, err)
		}
		return kb / 1024, nil
	}
	return 0, errors.New("peak RSS: no VmHWM")
}
