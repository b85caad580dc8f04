package bus

import (
	"bytes"
	"io"
	"testing"

	"github.com/segmentio/kafka-go/compress"
)

// TestLZ4Codec checks that kafka-go compresses with Herald's LZ4 codec:
// frames of 64 KiB blocks that kafka-go's reader reads back, writer after
// writer from the pool.
func TestLZ4Codec(t *testing.T) {
	codec := compress.Lz4.Codec()
	if _, ok := codec.(*lz4Codec); !ok {
		t.Fatalf("kafka-go's LZ4 codec is %T, want *lz4Codec", codec)
	}
	data := bytes.Repeat([]byte(`{"kind":"outcome","state":"delivered","delivery_id":"d-0001"}`), 5000) // > 64 KiB
	for i := range 3 {
		var buf bytes.Buffer
		w := codec.NewWriter(&buf)
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		frame := buf.Bytes()
		// Magic number, FLG, then BD: bits 4-6 are the block size index,
		// 4 for 64 KiB (LZ4 frame format §"Block Maximum Size").
		if len(frame) < 6 || (frame[5]>>4)&7 != 4 {
			t.Fatalf("write %d: frame descriptor % x: block size index is not 4 (64 KiB)", i, frame[:min(len(frame), 6)])
		}
		r := codec.NewReader(bytes.NewReader(frame))
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatalf("write %d: read back: %v", i, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("write %d: read back %d bytes, want the %d written", i, len(got), len(data))
		}
	}
}
