package bus

import (
	"io"
	"sync"

	"github.com/pierrec/lz4/v4"
	"github.com/segmentio/kafka-go/compress"
)

// kafka-go's LZ4 codec writes frames of 4 MiB blocks (the LZ4 library's
// default), so that every producer request compressing a batch holds two
// 4 MiB buffers (the block and its compressed copy), and every reader
// decompressing such a frame one more, whatever the size of the batch: a
// few hundred kilobytes of jobs or receipts went through a dozen
// megabytes of buffers, kept alive between requests by the library's
// pools. Herald installs in kafka-go's codec table (compress.Codecs, which
// every producer and reader of the process uses) a codec that writes
// 64 KiB blocks instead: LZ4 matches reach back at most 64 KiB anyway, so
// the ratio hardly changes. Frames are standard LZ4 frames (the block size
// is in the frame descriptor), so any Kafka client reads them, and this
// codec reads frames of any block size.
func init() {
	compress.Codecs[compress.Lz4] = lz4Codec{}
}

// lz4BlockSize is the block size of the LZ4 frames Herald writes.
var lz4BlockSize = lz4.BlockSizeOption(lz4.Block64Kb)

var (
	lz4Readers sync.Pool
	lz4Writers sync.Pool
)

// lz4Codec is kafka-go's LZ4 codec (compress.Lz4Codec) writing 64 KiB
// blocks.
type lz4Codec struct{}

var _ compress.Codec = lz4Codec{}

func (lz4Codec) Code() int8   { return int8(compress.Lz4) }
func (lz4Codec) Name() string { return "lz4" }

func (lz4Codec) NewReader(r io.Reader) io.ReadCloser {
	z, _ := lz4Readers.Get().(*lz4.Reader)
	if z != nil {
		z.Reset(r)
	} else {
		z = lz4.NewReader(r)
	}
	return &lz4Reader{z}
}

func (lz4Codec) NewWriter(w io.Writer) io.WriteCloser {
	z, _ := lz4Writers.Get().(*lz4.Writer)
	if z != nil {
		z.Reset(w) // keeps the block size
	} else {
		z = lz4.NewWriter(w)
		// Applying a valid block size to a new writer cannot fail.
		_ = z.Apply(lz4BlockSize)
	}
	return &lz4Writer{z}
}

type lz4Reader struct{ *lz4.Reader }

func (r *lz4Reader) Close() error {
	if z := r.Reader; z != nil {
		r.Reader = nil
		z.Reset(nil)
		lz4Readers.Put(z)
	}
	return nil
}

type lz4Writer struct{ *lz4.Writer }

func (w *lz4Writer) Close() error {
	z := w.Writer
	if z == nil {
		return nil
	}
	w.Writer = nil
	err := z.Close()
	z.Reset(nil)
	lz4Writers.Put(z)
	return err
}
