//go:build unix

package busauth_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/busauth"
)

// TestWriteFileKeepsTheLinkAndTheOwner: a key file reached through a
// symbolic link (a secret volume's layout) is replaced where the link
// points, the link kept; the file keeps its owner and group (run as root,
// the file first belongs to another user, as a file Herald's processes
// read would) and mode 0600.
func TestWriteFileKeepsTheLinkAndTheOwner(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "data", "publishing.key")
	require.NoError(t, os.MkdirAll(filepath.Dir(real), 0o700))
	require.NoError(t, os.WriteFile(real, busauth.Format(secret(1)), 0o600))
	if os.Getuid() == 0 {
		require.NoError(t, os.Chown(real, 4242, 4243))
	}
	before := owner(t, real)
	link := filepath.Join(dir, "publishing.key")
	require.NoError(t, os.Symlink(filepath.Join("data", "publishing.key"), link))

	data := busauth.Format(secret(2), secret(1))
	require.NoError(t, busauth.WriteFile(link, data))

	fi, err := os.Lstat(link)
	require.NoError(t, err)
	assert.NotZero(t, fi.Mode()&os.ModeSymlink, "the link is kept")
	got, err := os.ReadFile(real)
	require.NoError(t, err)
	assert.Equal(t, string(data), string(got), "the file the link names is replaced")
	st, err := os.Stat(real)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	assert.Equal(t, before, owner(t, real), "owner and group kept")
}

func owner(t *testing.T, path string) [2]uint32 {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	s := st.Sys().(*syscall.Stat_t)
	return [2]uint32{s.Uid, s.Gid}
}
