package busauth

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"
)

// retiredWord follows a retired key on its line of a key file.
const retiredWord = "retired"

// Cutoffs bound what a retired key verifies: for each topic (without
// prefix, the purpose records are signed for), the offset of each
// partition, partition 0 first, below which the key's records verify —
// the partition's end when the key was retired. A record of a topic or
// partition not listed, or at or above its offset, is refused. Offsets,
// unlike a record's timestamp, are assigned by the broker: a writer
// holding the key cannot place a record below them.
type Cutoffs map[string][]int64

// String writes c as a key file's line carries it: topics in order,
// "alerts=12,0,7;receipts=3,4,0".
func (c Cutoffs) String() string {
	var b strings.Builder
	for i, topic := range slices.Sorted(maps.Keys(c)) {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(topic)
		b.WriteByte('=')
		for j, o := range c[topic] {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(o, 10))
		}
	}
	return b.String()
}

// ParseCutoffs reads cutoffs written by Cutoffs.String.
func ParseCutoffs(s string) (Cutoffs, error) {
	c := Cutoffs{}
	if s == "" {
		return c, nil
	}
	for part := range strings.SplitSeq(s, ";") {
		topic, list, ok := strings.Cut(part, "=")
		if !ok || topic == "" || strings.ContainsAny(topic, " \t,") {
			return nil, fmt.Errorf("cutoffs %q: want topic=offset,offset;topic=…", truncate(part))
		}
		if _, dup := c[topic]; dup {
			return nil, fmt.Errorf("cutoffs: topic %s is listed twice", topic)
		}
		offs := []int64{}
		if list == "" {
			c[topic] = offs // a topic with no partition: nothing below
			continue
		}
		for o := range strings.SplitSeq(list, ",") {
			n, err := strconv.ParseInt(o, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("cutoffs of %s: %q is not an offset", topic, truncate(o))
			}
			offs = append(offs, n)
		}
		c[topic] = offs
	}
	return c, nil
}

func (c Cutoffs) clone() Cutoffs {
	if c == nil {
		return nil
	}
	out := make(Cutoffs, len(c))
	for t, offs := range c {
		out[t] = slices.Clone(offs)
	}
	return out
}

// admit returns nil when the retired key id may verify a record of topic
// at place at (nil: unknown), or ErrRetiredKey saying why not.
func (c Cutoffs) admit(id, topic string, at *Place) error {
	if at == nil {
		return fmt.Errorf("%w: key %s is retired, and the record's place, which bounds what it verifies, is not known here", ErrRetiredKey, id)
	}
	offs, ok := c[topic]
	if !ok {
		return fmt.Errorf("%w: key %s was retired with no cutoff for topic %s (record at partition %d offset %d)", ErrRetiredKey, id, topic, at.Partition, at.Offset)
	}
	if at.Partition < 0 || at.Partition >= len(offs) {
		return fmt.Errorf("%w: key %s was retired when topic %s had %d partitions (record at partition %d offset %d)", ErrRetiredKey, id, topic, len(offs), at.Partition, at.Offset)
	}
	if cut := offs[at.Partition]; at.Offset >= cut {
		return fmt.Errorf("%w: key %s was retired at offset %d of topic %s partition %d (record at offset %d)", ErrRetiredKey, id, cut, topic, at.Partition, at.Offset)
	}
	return nil
}

// Retirement is what Retire did to one key.
type Retirement struct {
	// ID names the key (Keyring.IDs).
	ID string
	// Already says the key was retired before: its cutoffs were kept.
	Already bool
	// Cutoffs are the key's cutoffs now.
	Cutoffs Cutoffs
}

// ErrOneKey is Retire's answer for a key file of one key: the key that
// signs is never retired.
var ErrOneKey = errors.New("the file holds one key, which signs: put a new key first before retiring the old one")

// Retire rewrites the key file data so that every key but the first is
// retired at ends (the end offset of each partition of each topic when it
// is called): the key verifies what it signed before, and nothing after.
// A key already retired keeps its cutoffs; they never move forward. Every
// other line (comments, blank lines) is kept as it is. It returns the new
// file and what it did to each key but the first, in the file's order.
func Retire(data []byte, ends Cutoffs) ([]byte, []Retirement, error) {
	k, err := Parse(data)
	if err != nil {
		return nil, nil, err
	}
	if len(k.keys) < 2 {
		return nil, nil, ErrOneKey
	}
	var out bytes.Buffer
	var done []Retirement
	first := true
	for line := range bytes.Lines(data) {
		e, ok, _ := parseLine(string(line)) // Parse read every line
		if !ok {
			out.Write(line)
			continue
		}
		if first {
			first = false
			out.Write(line)
			continue
		}
		id := keyID(e.secret)
		if e.retired {
			done = append(done, Retirement{ID: id, Already: true, Cutoffs: e.cutoffs})
			out.Write(line)
			continue
		}
		c := ends.clone()
		if c == nil {
			c = Cutoffs{}
		}
		done = append(done, Retirement{ID: id, Cutoffs: c})
		out.WriteString(keyPrefix + base64Key(e.secret) + " " + retiredWord)
		if s := c.String(); s != "" {
			out.WriteString(" " + s)
		}
		out.WriteByte('\n')
	}
	if _, err := Parse(out.Bytes()); err != nil {
		return nil, nil, fmt.Errorf("retire: the rewritten file does not read back: %w", err)
	}
	return out.Bytes(), done, nil
}

// WriteFile replaces the key file at path with data, mode 0600, at once
// (renameio: a temporary file beside it, synced, renamed into place), so a
// process starting meanwhile reads the old file or the new one, whole. A
// symbolic link is followed: the file it names is replaced and the link
// kept. The file keeps its owner and group, so that a run as root does
// not leave a file the Herald processes' user cannot read; when they
// cannot be kept (another user's file, run without the right to give it
// back), nothing is written.
func WriteFile(path string, data []byte) error {
	if _, err := Parse(data); err != nil {
		return fmt.Errorf("write publishing key %s: %w", path, err)
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("write publishing key: %w", err)
	}
	f, err := renameio.NewPendingFile(target, renameio.WithStaticPermissions(0o600))
	if err != nil {
		return fmt.Errorf("write publishing key: %w", err)
	}
	defer f.Cleanup() // after the rename, nothing is left to clean
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write publishing key: %w", err)
	}
	if err := keepOwner(f.File, target); err != nil {
		return fmt.Errorf("write publishing key %s: keep its owner: %w (run as the file's owner, or as root)", target, err)
	}
	if err := f.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("write publishing key: %w", err)
	}
	return nil
}
