package bus

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go/sasl"
)

// scramMechanism is a SCRAM client (RFC 5802, RFC 7677) for kafka-go.
//
// kafka-go's own sasl/scram package needs github.com/xdg-go/scram, which is
// not in Herald's module graph; the client side of SCRAM is small enough to
// own. Passwords are used as given (no SASLprep), which is exact for ASCII.
type scramMechanism struct {
	name     string
	hash     func() hash.Hash
	username string
	password string
}

// minSCRAMIterations is the lowest PBKDF2 iteration count accepted from a
// server (RFC 7677 §4 asks for at least 4096).
const minSCRAMIterations = 4096

var _ sasl.Mechanism = (*scramMechanism)(nil)

func newSCRAM(mechanism, username, password string) *scramMechanism {
	h := sha256.New
	if mechanism == SASLSCRAMSHA512 {
		h = sha512.New
	}
	return &scramMechanism{name: mechanism, hash: h, username: username, password: password}
}

// Name returns the SASL mechanism name.
func (m *scramMechanism) Name() string { return m.name }

// Start sends the client-first-message.
func (m *scramMechanism) Start(context.Context) (sasl.StateMachine, []byte, error) {
	nonce := make([]byte, 24)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, fmt.Errorf("scram: client nonce: %w", err)
	}
	name := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(m.username)
	s := &scramSession{m: m, clientNonce: base64.RawStdEncoding.EncodeToString(nonce)}
	s.clientFirstBare = "n=" + name + ",r=" + s.clientNonce
	return s, []byte("n,," + s.clientFirstBare), nil
}

type scramSession struct {
	m               *scramMechanism
	clientNonce     string
	clientFirstBare string
	serverSignature []byte
}

// Next answers the server-first-message with the client-final-message, then
// checks the server's signature in the server-final-message.
func (s *scramSession) Next(_ context.Context, challenge []byte) (bool, []byte, error) {
	if s.serverSignature != nil {
		return true, nil, s.verifyServerFinal(string(challenge))
	}
	resp, err := s.clientFinal(string(challenge))
	return false, resp, err
}

func scramAttrs(msg string) map[byte]string {
	attrs := make(map[byte]string)
	for _, f := range strings.Split(msg, ",") {
		if len(f) >= 2 && f[1] == '=' {
			attrs[f[0]] = f[2:]
		}
	}
	return attrs
}

func (s *scramSession) clientFinal(serverFirst string) ([]byte, error) {
	attrs := scramAttrs(serverFirst)
	if _, ok := attrs['m']; ok {
		return nil, errors.New("scram: server requires an unsupported extension")
	}
	nonce := attrs['r']
	if !strings.HasPrefix(nonce, s.clientNonce) || len(nonce) == len(s.clientNonce) {
		return nil, errors.New("scram: server nonce does not extend the client nonce")
	}
	salt, err := base64.StdEncoding.DecodeString(attrs['s'])
	if err != nil || len(salt) == 0 {
		return nil, errors.New("scram: server sent no valid salt")
	}
	iter, err := strconv.Atoi(attrs['i'])
	if err != nil || iter < minSCRAMIterations {
		return nil, fmt.Errorf("scram: server iteration count %q is below %d", attrs['i'], minSCRAMIterations)
	}
	salted, err := pbkdf2.Key(s.m.hash, s.m.password, salt, iter, s.m.hash().Size())
	if err != nil {
		return nil, fmt.Errorf("scram: derive salted password: %w", err)
	}
	clientKey := s.hmac(salted, "Client Key")
	h := s.m.hash()
	h.Write(clientKey)
	storedKey := h.Sum(nil)
	withoutProof := "c=biws,r=" + nonce
	authMessage := s.clientFirstBare + "," + serverFirst + "," + withoutProof
	proof := s.hmac(storedKey, authMessage)
	for i := range proof {
		proof[i] ^= clientKey[i]
	}
	s.serverSignature = s.hmac(s.hmac(salted, "Server Key"), authMessage)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

func (s *scramSession) verifyServerFinal(serverFinal string) error {
	attrs := scramAttrs(serverFinal)
	if e, ok := attrs['e']; ok {
		return fmt.Errorf("scram: server rejected authentication: %s", e)
	}
	got, err := base64.StdEncoding.DecodeString(attrs['v'])
	if err != nil || !hmac.Equal(got, s.serverSignature) {
		return errors.New("scram: server signature does not verify")
	}
	return nil
}

func (s *scramSession) hmac(key []byte, msg string) []byte {
	mac := hmac.New(s.m.hash, key)
	mac.Write([]byte(msg))
	return mac.Sum(nil)
}
