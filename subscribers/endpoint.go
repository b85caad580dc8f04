package subscribers

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// EndpointKeyPrefix starts the key, in the subscribers topic, of the state
// Herald records for a partner's endpoint. Subscriber ids are slugs, which
// never start with '~', so the keys cannot collide.
const EndpointKeyPrefix = "~endpoint/"

// EndpointKey returns the subscribers-topic key of the state of the
// endpoint url of subscriber: one key per endpoint, so the compacted topic
// keeps its latest state beside, never inside, the partner's record.
func EndpointKey(subscriber, url string) string {
	return EndpointKeyPrefix + subscriber + "/" + keyDigest(url)
}

// keyDigest returns the part of a subscribers-topic key that names one
// target of a partner (a webhook URL, an address): the hex of the first 12
// bytes of its SHA-256, so that the key carries no credentials of a URL
// and has a bounded length.
func keyDigest(target string) string {
	h := sha256.Sum256([]byte(target))
	return hex.EncodeToString(h[:12])
}

// IsEndpointKey reports whether a subscribers-topic key holds an endpoint
// state rather than a partner record.
func IsEndpointKey(key string) bool { return strings.HasPrefix(key, EndpointKeyPrefix) }

// EndpointState is Herald's own record of one endpoint of a partner: a
// delivery worker disables an endpoint that answered 410 Gone, an
// administrator enables it again. It is applied on top of the partner's
// record and never rewrites it, so an administrator's change to the record
// (a suspension above all) always stands, whatever the timing.
type EndpointState struct {
	Subscriber string    `json:"subscriber"`
	URL        string    `json:"url"`
	Disabled   bool      `json:"disabled"`
	Reason     string    `json:"reason,omitempty"`
	By         string    `json:"by"`
	At         time.Time `json:"at"`
}
