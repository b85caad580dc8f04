//go:build unix

package bench

import (
	"fmt"
	"syscall"
	"time"
)

// cpuTime returns the CPU time, user and system, the process has used so
// far: getrusage(2) with RUSAGE_SELF, every thread of the process.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("process CPU time: getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
