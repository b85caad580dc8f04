package subscribers

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fill sets every field reachable from v to a value that differs from the
// zero value and from every other field's (strings numbered, booleans
// true, slices of two elements, pointers allocated).
func fill(t *testing.T, v reflect.Value, n *int) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		*n++
		v.SetString(fmt.Sprintf("s%d-é\u2028\x00", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(t, v.Index(i), n)
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), n)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, v.Field(i), n)
		}
	default:
		t.Fatalf("pack does not know how to carry a %s (%s): teach pack and unpack the new field", v.Kind(), v.Type())
	}
}

// TestPackCarriesEveryField: a record with every field set comes back
// from pack and unpack equal, so a field added to Subscriber, Email,
// Webhook or Pull cannot be dropped by the registry unnoticed.
func TestPackCarriesEveryField(t *testing.T) {
	var s Subscriber
	n := 0
	fill(t, reflect.ValueOf(&s).Elem(), &n)
	require.Equal(t, &s, unpack(pack(&s)))

	// Each boolean on its own, and long strings (multi-byte lengths).
	for i := range 4 {
		c := s
		c.Sensitive, c.AcceptsTest = i&1 != 0, i&2 != 0
		c.Webhooks = []Webhook{s.Webhooks[0], s.Webhooks[1]}
		c.Webhooks[0].Disabled, c.Webhooks[1].Disabled = i&1 == 0, false
		c.Email = []Email{{Address: strings.Repeat("a", 300), PGPKey: strings.Repeat("k", 70_000)}}
		require.Equal(t, &c, unpack(pack(&c)))
	}
}

func TestPackKeepsNilAndEmptyApart(t *testing.T) {
	for _, s := range []*Subscriber{
		{},
		{ID: "a", Sectors: []string{}, Regions: []string{}, Email: []Email{}, Webhooks: []Webhook{}},
		{ID: "a", Webhooks: []Webhook{{URL: "u"}, {Secrets: []string{}}}, Pull: &Pull{}},
		{ID: "a", Sectors: []string{""}, Email: []Email{{}}},
	} {
		require.Equal(t, s, unpack(pack(s)))
	}
}

// TestRegistryKeepsReadRecordsPacked: what Apply stores is packed, and
// what Get returns is the record decoded and normalised.
func TestRegistryKeepsReadRecordsPacked(t *testing.T) {
	r := NewRegistry()
	rec := []byte(`{"id":"acme","name":"Acme","kind":"business","sectors":["care","retail"],"regions":["uk-lon"],
		"clearance":"amber","sensitive":true,"email":[{"address":"a@acme.example"}],
		"webhooks":[{"url":"https://h.acme.example/x","secrets":["whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="],"format":"STIX"}],
		"pull":{}}`)
	require.NoError(t, r.Apply([]byte("acme"), rec))
	want, err := Decode(rec)
	require.NoError(t, err)
	want.Normalize()
	require.Equal(t, want, r.Get("acme"))
	require.Equal(t, want, r.Record("acme"))
	slot, ok := r.ids.find(r.recs, "acme")
	require.True(t, ok)
	require.Nil(t, r.recs[slot].s)
	require.NotEmpty(t, r.recs[slot].p)
	require.NotSame(t, r.Get("acme"), r.Get("acme"), "each Get is a copy of the packed record")
}

// TestPackSharesWords: the vocabulary fields of records are packed once
// for all records, words too long for the vocabulary are packed in full,
// and a record packed before later words were added still unpacks.
func TestPackSharesWords(t *testing.T) {
	rec := func(id, kind string) *Subscriber {
		return &Subscriber{ID: id, Kind: kind, Sectors: []string{"care", "warehousing-logistics"},
			Clearance: "amber", Status: StatusActive, Webhooks: []Webhook{{URL: "https://h.example/" + id, MaxTLP: "green", Format: "stix"}}}
	}
	a := rec("a", KindBusiness)
	pa := pack(a)
	plain := len(a.ID) + len(a.Kind) + len("care") + len("warehousing-logistics") + len("amber") + len(StatusActive) +
		len(a.Webhooks[0].URL) + len("green") + len("stix")
	require.Less(t, len(pa), plain, "the words are not in the packed record")

	long := rec("b", strings.Repeat("k", maxWordLen+1))
	pb := pack(long)
	require.Greater(t, len(pb), maxWordLen, "a word longer than maxWordLen is packed in full")
	for i := range 10 {
		pack(rec(fmt.Sprintf("c%d", i), fmt.Sprintf("kind-%d", i)))
	}
	require.Equal(t, a, unpack(pa))
	require.Equal(t, long, unpack(pb))
}
