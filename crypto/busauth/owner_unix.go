//go:build unix

package busauth

import (
	"os"
	"syscall"
)

// keepOwner gives f the owner and group of the file at path, if it has
// others than f.
func keepOwner(f *os.File, path string) error {
	old, err := os.Stat(path)
	if err != nil {
		return err
	}
	st, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	cur, err := f.Stat()
	if err != nil {
		return err
	}
	if c, ok := cur.Sys().(*syscall.Stat_t); ok && c.Uid == st.Uid && c.Gid == st.Gid {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}
