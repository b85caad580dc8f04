package bus

import (
	"io"
	"sync"

	"github.com/pierrec/lz4/v4"
	"github.com/segmentio/kafka-go/compress"
)

// lz4Codec is the LZ4 codec (Kafka compression code 3) that kafka-go uses
// to compress the record batches Herald writes: kafka-go's own, except
// that its frames are cut into 64 KiB blocks instead of pierrec/lz4's
// default 4 MiB. Every frame takes two buffers of the block size from a
// pool that each garbage collection empties, so with 4 MiB blocks nearly
// every produce request of the deliveries, retry and receipt topics
// allocated and cleared 8 MiB (herald bench's webhook run: 184–187 µs of
// CPU per delivery before, 166–173 after). A produce request carries at most
// maxRequestBytes, and a frame of 64 KiB blocks compresses batches of
// similar records about as well. Any LZ4 frame reader (kafka-go,
// librdkafka, Kafka's Java client) reads either block size; reading is
// kafka-go's codec unchanged.
type lz4Codec struct {
	writers sync.Pool // *lz4.Writer with 64 KiB blocks
}

// Code implements compress.Codec.
func (c *lz4Codec) Code() int8 { return compress.Lz4Codec.Code() }

// Name implements compress.Codec.
func (c *lz4Codec) Name() string { return compress.Lz4Codec.Name() }

// NewReader implements compress.Codec with kafka-go's LZ4 reader.
func (c *lz4Codec) NewReader(r io.Reader) io.ReadCloser { return compress.Lz4Codec.NewReader(r) }

// NewWriter implements compress.Codec.
func (c *lz4Codec) NewWriter(w io.Writer) io.WriteCloser {
	z, _ := c.writers.Get().(*lz4.Writer)
	if z == nil {
		z = lz4.NewWriter(w)
		if err := z.Apply(lz4.BlockSizeOption(lz4.Block64Kb)); err != nil {
			panic("bus: lz4 block size option: " + err.Error()) // a constant option: cannot fail
		}
	} else {
		z.Reset(w) // keeps the block size
	}
	return &lz4Writer{c: c, z: z}
}

// lz4Writer returns its writer to the pool when closed.
type lz4Writer struct {
	c *lz4Codec
	z *lz4.Writer
}

func (w *lz4Writer) Write(p []byte) (int, error) { return w.z.Write(p) }

func (w *lz4Writer) Close() error {
	z := w.z
	if z == nil {
		return nil
	}
	w.z = nil
	err := z.Close()
	z.Reset(nil)
	w.c.writers.Put(z)
	return err
}

// kafka-go finds codecs in its global table by compression code.
func init() { compress.Codecs[compress.Lz4] = &lz4Codec{} }
