package bus

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/herald-alerts/herald/internal/config"
)

// tlsConfig builds the client TLS configuration, or nil when TLS is off.
func tlsConfig(c config.KafkaTLS) (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // operator's explicit choice, documented as development only
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file %s: no PEM certificate found", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load kafka.tls.cert_file and key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// mechanism builds the SASL mechanism, or nil when SASL is off.
func mechanism(c config.KafkaSASL, password string) (sasl.Mechanism, error) {
	switch c.Mechanism {
	case "":
		return nil, nil
	case config.SASLPlain:
		return plain.Mechanism{Username: c.Username, Password: password}, nil
	case config.SASLSCRAMSHA256:
		m, err := scram.Mechanism(scram.SHA256, c.Username, password)
		if err != nil {
			return nil, fmt.Errorf("kafka.sasl: %w", err)
		}
		return m, nil
	case config.SASLSCRAMSHA512:
		m, err := scram.Mechanism(scram.SHA512, c.Username, password)
		if err != nil {
			return nil, fmt.Errorf("kafka.sasl: %w", err)
		}
		return m, nil
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism: %q is not supported", c.Mechanism)
	}
}
