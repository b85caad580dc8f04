//go:build !linux

package webhook

import "io/fs"

// changeStamp adds nothing where the inode's change time is not read:
// the stamp is the modification time and size alone.
func changeStamp(b []byte, _ fs.FileInfo) []byte { return b }
