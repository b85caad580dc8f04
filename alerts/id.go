package alerts

import (
	"crypto/rand"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// NewID returns a new sortable, unique alert id: a lower-case ULID.
func NewID(now time.Time) string {
	return strings.ToLower(ulid.MustNew(ulid.Timestamp(now), rand.Reader).String())
}
