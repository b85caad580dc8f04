package subscribers

import (
	"encoding/binary"

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
	n := 64 + len(s.ID) + len(s.Name) + len(s.Kind) + len(s.MinSeverity) + len(s.Clearance) + len(s.Status)
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
	b = packString(b, s.Kind)
	b = packStrings(b, s.Sectors)
	b = packStrings(b, s.Regions)
	b = packString(b, string(s.MinSeverity))
	b = packString(b, string(s.Clearance))
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
	b = packString(b, s.Status)
	b = packLen(b, s.Email == nil, len(s.Email))
	for _, e := range s.Email {
		b = packString(b, e.Address)
		b = packString(b, e.PGPKey)
	}
	b = packLen(b, s.Webhooks == nil, len(s.Webhooks))
	for _, w := range s.Webhooks {
		b = packString(b, w.URL)
		b = packStrings(b, w.Secrets)
		b = packString(b, string(w.MaxTLP))
		b = packString(b, w.Format)
		b = packString(b, w.ClientCert)
		b = packString(b, w.ClientKey)
		var wf byte
		if w.Disabled {
			wf |= packDisabled
		}
		b = append(b, wf)
	}
	if s.Pull != nil {
		b = packString(b, string(s.Pull.MaxTLP))
	}
	return string(b)
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
	p string
	i int
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

// unpack decodes a record made by pack.
func unpack(p string) *Subscriber {
	u := &unpacker{p: p}
	s := &Subscriber{}
	s.ID = u.string()
	s.Name = u.string()
	s.Kind = u.string()
	s.Sectors = u.strings()
	s.Regions = u.strings()
	s.MinSeverity = alerts.Severity(u.string())
	s.Clearance = alerts.TLP(u.string())
	flags := u.byte()
	s.Sensitive = flags&packSensitive != 0
	s.AcceptsTest = flags&packAcceptsTest != 0
	s.Status = u.string()
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
			w.MaxTLP = alerts.TLP(u.string())
			w.Format = u.string()
			w.ClientCert = u.string()
			w.ClientKey = u.string()
			w.Disabled = u.byte()&packDisabled != 0
		}
	}
	if flags&packPull != 0 {
		s.Pull = &Pull{MaxTLP: alerts.TLP(u.string())}
	}
	if u.i != len(p) {
		panic("subscribers: a packed record longer than its fields")
	}
	return s
}
