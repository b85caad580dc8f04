//go:build !unix

package bench

import (
	"errors"
	"time"
)

// cpuTime is getrusage(2) where there is one.
func cpuTime() (time.Duration, error) {
	return 0, errors.New("process CPU time: getrusage(2) is not available on this system")
}
