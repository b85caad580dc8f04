package subscribers

import (
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/herald-alerts/herald/alerts"
)

// A registry of a hundred thousand partners kept as decoded records costs
// about 700 bytes a partner: the Subscriber, its Email and Webhook slices
// and a dozen separately allocated strings, every one of them a pointer the
// garbage collector follows at each cycle. The registry keeps the records
// it reads from the topic packed instead: every field of the record in one
// string (lengths as uvarints, each slice's length plus one so that nil
// and empty differ, flags in a byte), about 220 bytes for such a partner
// and nothing for the collector to scan. unpack builds the record again,
// its strings pointing into the packed one (no copy), in well under a
// microsecond.
//
// The fields drawn from a small vocabulary (kind, sectors, regions,
// severity, clearance, status, a webhook's max_tlp and format, the pull
// channel's max_tlp) are packed as words: the index of one copy the
// records share (words), about 45 bytes less a partner.
//
// pack and unpack know every field of Subscriber, Email, Webhook and Pull;
// packed_test.go fails when one is added, so that a field is never
// silently dropped on the way through the registry.

// Flags of a packed record and of a packed webhook.
const (
	packSensitive = 1 << iota
	packAcceptsTest
	packPull
)

const packDisabled = 1

// pack encodes s into one string.
func pack(s *Subscriber) string {
	n := 64 + len(s.ID) + len(s.Name) + len(s.Incarnation) + len(s.Kind) + len(s.MinSeverity) + len(s.Clearance) + len(s.Status)
	for _, x := range s.Sectors {
		n += 2 + len(x)
	}
	for _, x := range s.Regions {
		n += 2 + len(x)
	}
	for _, e := range s.Email {
		n += 4 + len(e.Address) + len(e.PGPKey)
	}
	for _, w := range s.Webhooks {
		n += 16 + len(w.URL) + len(w.MaxTLP) + len(w.Format) + len(w.ClientCert) + len(w.ClientKey)
		for _, x := range w.Secrets {
			n += 2 + len(x)
		}
	}
	b := make([]byte, 0, n)
	b = packString(b, s.ID)
	b = packString(b, s.Name)
	b = packWord(b, s.Kind)
	b = packWords(b, s.Sectors)
	b = packWords(b, s.Regions)
	b = packWord(b, string(s.MinSeverity))
	b = packWord(b, string(s.Clearance))
	var flags byte
	if s.Sensitive {
		flags |= packSensitive
	}
	if s.AcceptsTest {
		flags |= packAcceptsTest
	}
	if s.Pull != nil {
		flags |= packPull
	}
	b = append(b, flags)
	b = packWord(b, s.Status)
	b = packLen(b, s.Email == nil, len(s.Email))
	for _, e := range s.Email {
		b = packString(b, e.Address)
		b = packString(b, e.PGPKey)
	}
	b = packLen(b, s.Webhooks == nil, len(s.Webhooks))
	for _, w := range s.Webhooks {
		b = packString(b, w.URL)
		b = packStrings(b, w.Secrets)
		b = packWord(b, string(w.MaxTLP))
		b = packWord(b, w.Format)
		b = packString(b, w.ClientCert)
		b = packString(b, w.ClientKey)
		var wf byte
		if w.Disabled {
			wf |= packDisabled
		}
		b = append(b, wf)
	}
	if s.Pull != nil {
		b = packWord(b, string(s.Pull.MaxTLP))
	}
	b = packString(b, s.Incarnation)
	return string(b)
}

// words is the vocabulary packed records share: every word packed, once,
// up to maxWords words of at most maxWordLen bytes (longer or later ones
// are packed in full, as a safeguard against records that do not stick
// to a vocabulary). The list only grows, so that the index a record holds
// stays valid; unpack reads it without the lock.
var words struct {
	mu   sync.Mutex
	ids  map[string]uint64 // word → its index in list, plus one
	list atomic.Pointer[[]string]
}

const (
	maxWords   = 4096
	maxWordLen = 64
)

// wordID returns the index plus one of s in words, adding it, or 0 when s
// is not to be shared.
func wordID(s string) uint64 {
	if s == "" || len(s) > maxWordLen {
		return 0
	}
	words.mu.Lock()
	defer words.mu.Unlock()
	if i, ok := words.ids[s]; ok {
		return i
	}
	if len(words.ids) >= maxWords {
		return 0
	}
	if words.ids == nil {
		words.ids = make(map[string]uint64)
	}
	var list []string
	if l := words.list.Load(); l != nil {
		list = *l
	}
	// A new array each time: readers may hold the old one.
	list = append(list[:len(list):len(list)], strings.Clone(s))
	words.list.Store(&list)
	i := uint64(len(list))
	words.ids[list[i-1]] = i
	return i
}

// packWord appends s as a word: twice its index plus one, plus one; or
// twice its length, then its bytes.
func packWord(b []byte, s string) []byte {
	if i := wordID(s); i > 0 {
		return binary.AppendUvarint(b, (i-1)<<1|1)
	}
	return append(binary.AppendUvarint(b, uint64(len(s))<<1), s...)
}

func packWords(b []byte, ss []string) []byte {
	b = packLen(b, ss == nil, len(ss))
	for _, s := range ss {
		b = packWord(b, s)
	}
	return b
}

func packString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// packLen appends a slice's length plus one, or 0 for a nil slice.
func packLen(b []byte, isNil bool, n int) []byte {
	if isNil {
		return append(b, 0)
	}
	return binary.AppendUvarint(b, uint64(n)+1)
}

func packStrings(b []byte, ss []string) []byte {
	b = packLen(b, ss == nil, len(ss))
	for _, s := range ss {
		b = packString(b, s)
	}
	return b
}

// unpacker reads a packed record. Packed records are made by pack only:
// a malformed one is a bug, and reading past its end panics.
type unpacker struct {
	p     string
	i     int
	words []string // the shared words, as long as when unpacking began
}

func (u *unpacker) uvarint() uint64 {
	var x uint64
	for shift := 0; ; shift += 7 {
		c := u.p[u.i]
		u.i++
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x
		}
	}
}

func (u *unpacker) byte() byte {
	c := u.p[u.i]
	u.i++
	return c
}

func (u *unpacker) string() string {
	n := int(u.uvarint())
	s := u.p[u.i : u.i+n]
	u.i += n
	return s
}

// word reads a word packed by packWord.
func (u *unpacker) word() string {
	x := u.uvarint()
	if x&1 == 1 {
		return u.words[x>>1]
	}
	n := int(x >> 1)
	s := u.p[u.i : u.i+n]
	u.i += n
	return s
}

func (u *unpacker) wordList() []string {
	n := u.len()
	if n < 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = u.word()
	}
	return ss
}

// len reads a slice's length: -1 for a nil slice.
func (u *unpacker) len() int { return int(u.uvarint()) - 1 }

func (u *unpacker) strings() []string {
	n := u.len()
	if n < 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = u.string()
	}
	return ss
}

// unpackSectors decodes the sectors of a record made by pack.
func unpackSectors(p string) []string {
	u := &unpacker{p: p}
	if l := words.list.Load(); l != nil {
		u.words = *l
	}
	u.string() // ID
	u.string() // Name
	u.word()   // Kind
	return u.wordList()
}

// unpack decodes a record made by pack.
func unpack(p string) *Subscriber {
	u := &unpacker{p: p}
	if l := words.list.Load(); l != nil {
		u.words = *l
	}
	s := &Subscriber{}
	s.ID = u.string()
	s.Name = u.string()
	s.Kind = u.word()
	s.Sectors = u.wordList()
	s.Regions = u.wordList()
	s.MinSeverity = alerts.Severity(u.word())
	s.Clearance = alerts.TLP(u.word())
	flags := u.byte()
	s.Sensitive = flags&packSensitive != 0
	s.AcceptsTest = flags&packAcceptsTest != 0
	s.Status = u.word()
	if n := u.len(); n >= 0 {
		s.Email = make([]Email, n)
		for i := range s.Email {
			s.Email[i] = Email{Address: u.string(), PGPKey: u.string()}
		}
	}
	if n := u.len(); n >= 0 {
		s.Webhooks = make([]Webhook, n)
		for i := range s.Webhooks {
			w := &s.Webhooks[i]
			w.URL = u.string()
			w.Secrets = u.strings()
			w.MaxTLP = alerts.TLP(u.word())
			w.Format = u.word()
			w.ClientCert = u.string()
			w.ClientKey = u.string()
			w.Disabled = u.byte()&packDisabled != 0
		}
	}
	if flags&packPull != 0 {
		s.Pull = &Pull{MaxTLP: alerts.TLP(u.word())}
	}
	s.Incarnation = u.string()
	if u.i != len(p) {
		panic("subscribers: a packed record longer than its fields")
	}
	return s
}
