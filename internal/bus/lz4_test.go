package bus_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/pierrec/lz4/v4"
	"github.com/segmentio/kafka-go/compress"
	"github.com/stretchr/testify/require"

	_ "github.com/herald-alerts/herald/internal/bus" // installs the LZ4 codec under test
)

// TestLZ4Frames checks the LZ4 codec every producer of the process uses:
// it writes standard frames of 64 KiB blocks that read back, and it reads
// frames of the library's default 4 MiB blocks, as other clients write.
func TestLZ4Frames(t *testing.T) {
	var data []byte
	for i := 0; len(data) < 300<<10; i++ {
		data = append(data, `{"id":"delivery-`...)
		data = append(data, byte('a'+i%26), byte('a'+i/26%26))
		data = append(data, `","alert":"same alert in every job of the batch"}`...)
	}
	codec := compress.Lz4.Codec()
	var frame bytes.Buffer
	w := codec.NewWriter(&frame)
	_, err := w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	// The frame descriptor: magic (4 bytes), FLG, BD; BD's bits 4-6 hold
	// the block size, 4 for 64 KiB.
	require.Greater(t, frame.Len(), 6)
	require.Equal(t, byte(4), frame.Bytes()[5]>>4&7, "block size of the frame written")
	require.Less(t, frame.Len(), len(data)/4, "compressed")

	r := codec.NewReader(bytes.NewReader(frame.Bytes()))
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.Equal(t, data, got)

	var big bytes.Buffer
	zw := lz4.NewWriter(&big)
	_, err = zw.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	require.Equal(t, byte(7), big.Bytes()[5]>>4&7, "the library's default frame has 4 MiB blocks")
	r = codec.NewReader(bytes.NewReader(big.Bytes()))
	got, err = io.ReadAll(r)
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.Equal(t, data, got)
}
