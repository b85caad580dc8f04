package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, which
// Linux fixes at 100 for what it reports to user space (proc(5),
// times(2)).
const userHZ = 100

// processCPU returns the CPU time, user and system, that process pid has
// used so far, all its threads: utime and stime of /proc/<pid>/stat
// (Linux, proc(5)), to a hundredth of a second.
func processCPU(pid int) (time.Duration, error) {
	file := fmt.Sprintf("/proc/%d/stat", pid)
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, fmt.Errorf("process CPU time: %w", err)
	}
	d, err := parseStatCPU(b)
	if err != nil {
		return 0, fmt.Errorf("process CPU time: %w in %s", err, file)
	}
	return d, nil
}

// parseStatCPU reads utime and stime (fields 14 and 15) from the text of a
// /proc/<pid>/stat. The command name, field 2, is in parentheses and may
// hold spaces and parentheses itself, so the fields are counted from the
// last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name")
	}
	f := bytes.Fields(stat[i+1:]) // from field 3, state
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	var ticks uint64
	for _, name := range []struct {
		field string
		v     []byte
	}{{"utime", f[11]}, {"stime", f[12]}} {
		n, err := strconv.ParseUint(string(name.v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s %q: %w", name.field, name.v, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
