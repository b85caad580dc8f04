package delivery

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
)

// KeyExpiry is what a key-expiry notice (ModeKeyExpiryNotice) says: the
// OpenPGP key Herald holds for one email address of a partner expires
// within one of the warning thresholds (email.key_expiry_warning). It
// carries nothing of any alert.
type KeyExpiry struct {
	Subscriber  string
	Address     string
	Fingerprint string
	Expires     time.Time
	// Threshold is the warning the notice is for (30 days, 7 days…):
	// one notice per threshold per key.
	Threshold time.Duration
}

// Names the notice's job carries.
const (
	// KeyExpiryIssuer is the issued_by of every key-expiry notice.
	KeyExpiryIssuer = "herald:keywatch"
	// keyExpiryPrefix starts the id of every key-expiry notice: the
	// prefix alerts refuse for analysts' alerts.
	keyExpiryPrefix = alerts.ReservedIDPrefix
	// Indicator types that carry the address and the fingerprint.
	indicatorAddress     = "email-address"
	indicatorFingerprint = "openpgp-fingerprint"
	indicatorThreshold   = "warning-threshold"
)

// NoticeID returns the id of the notice: deterministic, from (subscriber,
// address, key fingerprint, threshold), so that every Herald process that
// finds the same key within the same threshold names the same notice, and
// its delivery id (ID) is the same too. It is a valid alert id, since the
// job and its receipts go where alerts' do.
func (k KeyExpiry) NoticeID() string {
	h := sha256.Sum256([]byte(strings.Join([]string{"key-expiry/v1", k.Subscriber, strings.ToLower(k.Address),
		strings.ToUpper(k.Fingerprint), strconv.FormatInt(int64(k.Threshold/time.Second), 10)}, "\x00")))
	return keyExpiryPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:15]))
}

// IsKeyExpiryNotice reports whether id names a key-expiry notice.
func IsKeyExpiryNotice(id string) bool { return strings.HasPrefix(id, keyExpiryPrefix) }

// Notice returns the notice as the alert-shaped record a job carries,
// made at now: TLP:CLEAR, addressed to the subscriber alone, expiring
// with the key (a notice that could only arrive after the key expired is
// not sent), its address, fingerprint and threshold as indicators. Its
// title and its labels are what analysts see of it in the ledger.
func (k KeyExpiry) Notice(now time.Time) *alerts.Alert {
	issued, expires := now.UTC(), k.Expires.UTC()
	return &alerts.Alert{
		ID: k.NoticeID(), Type: alerts.TypeAlert, Status: alerts.StatusActual,
		Title:    "OpenPGP key expiry notice",
		Severity: alerts.SeverityMinor, TLP: alerts.TLPClear, Marking: alerts.MarkingOfficial,
		Handling: alerts.Handling{Code: "P"},
		Audience: alerts.Audience{Subscribers: []string{k.Subscriber}},
		Indicators: []alerts.Indicator{
			{Type: indicatorAddress, Value: k.Address},
			{Type: indicatorFingerprint, Value: strings.ToUpper(k.Fingerprint)},
			{Type: indicatorThreshold, Value: k.Threshold.String()},
		},
		ExpiresAt: &expires, IssuedAt: &issued, IssuedBy: KeyExpiryIssuer,
	}
}

// Job returns the delivery job of the notice, made at now.
func (k KeyExpiry) Job(now time.Time) *Job {
	a := k.Notice(now)
	return &Job{ID: ID(a.ID, k.Subscriber, k.Address), Alert: a, Subscriber: k.Subscriber,
		Channel: ChannelEmail, Target: k.Address, Mode: ModeKeyExpiryNotice}
}

// KeyExpiryOf reads what a key-expiry notice job says, checking that it
// is one: its id, its mode, and the address it names is its target.
func KeyExpiryOf(job *Job) (KeyExpiry, error) {
	if job == nil || job.Alert == nil || job.Mode != ModeKeyExpiryNotice || !IsKeyExpiryNotice(job.Alert.ID) {
		return KeyExpiry{}, errors.New("not a key-expiry notice")
	}
	a := job.Alert
	k := KeyExpiry{Subscriber: job.Subscriber}
	for _, ind := range a.Indicators {
		switch ind.Type {
		case indicatorAddress:
			k.Address = ind.Value
		case indicatorFingerprint:
			k.Fingerprint = ind.Value
		case indicatorThreshold:
			d, err := time.ParseDuration(ind.Value)
			if err != nil {
				return KeyExpiry{}, fmt.Errorf("key-expiry notice %s: threshold: %w", a.ID, err)
			}
			k.Threshold = d
		}
	}
	if a.ExpiresAt != nil {
		k.Expires = *a.ExpiresAt
	}
	switch {
	case k.Fingerprint == "" || k.Expires.IsZero():
		return KeyExpiry{}, fmt.Errorf("key-expiry notice %s names no key fingerprint or expiry", a.ID)
	case !strings.EqualFold(k.Address, job.Target):
		return KeyExpiry{}, fmt.Errorf("key-expiry notice %s names %q, not its target", a.ID, k.Address)
	case k.NoticeID() != a.ID:
		return KeyExpiry{}, fmt.Errorf("key-expiry notice %s does not match what it says", a.ID)
	}
	return k, nil
}
