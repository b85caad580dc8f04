package webhook

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// onDevice is a file's FileInfo as stat would report it for the same inode
// number and change time on another device.
type onDevice struct {
	fs.FileInfo
	st syscall.Stat_t
}

func (f onDevice) Sys() any { return &f.st }

// TestChangeStampNamesTheDevice: two files with the same inode number,
// change time, modification time and size, on different devices (a
// secret volume remounted, a link swapped to another filesystem), stamp
// differently, so the second is read rather than taken as unchanged.
func TestChangeStampNamesTheDevice(t *testing.T) {
	f := filepath.Join(t.TempDir(), "tls.crt")
	require.NoError(t, os.WriteFile(f, []byte("pem"), 0o600))
	fi, err := os.Stat(f)
	require.NoError(t, err)
	st := *fi.Sys().(*syscall.Stat_t)
	other := st
	other.Dev++
	here, there := changeStamp(nil, onDevice{fi, st}), changeStamp(nil, onDevice{fi, other})
	require.Equal(t, string(here), string(changeStamp(nil, fi)), "the same file stamps alike")
	require.NotEqual(t, string(here), string(there), "another device")
}
