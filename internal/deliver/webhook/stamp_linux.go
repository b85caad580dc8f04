package webhook

import (
	"fmt"
	"io/fs"
	"syscall"
)

// changeStamp adds to a file's stamp what a copy that keeps the
// modification time and size (cp -p, rsync -t, a restored backup) still
// changes: the device and inode (a file renamed into place, or one on
// another filesystem, where inode numbers are counted afresh) and the
// inode's change time, which no user-space call sets back.
func changeStamp(b []byte, fi fs.FileInfo) []byte {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Appendf(b, "%d:%d:%d.%d:", st.Dev, st.Ino, st.Ctim.Sec, st.Ctim.Nsec)
	}
	return b
}
