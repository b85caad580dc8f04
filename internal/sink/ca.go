package sink

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// CA is a throwaway certificate authority made for one run: ECDSA P-256,
// valid for a day. It issues the sinks' server certificate (localhost,
// partner.test, *.partner.test, 127.0.0.1 and ::1), so that Herald reaches
// them as in production, verifying against smtp.ca_file and
// webhooks.ca_file, and client certificates for mutual TLS.
type CA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	der    []byte
	server tls.Certificate
}

// NewCA makes a CA with common name name, and its server certificate.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("throwaway ca: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("throwaway ca: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("throwaway ca: %w", err)
	}
	ca := &CA{cert: cert, key: key, der: der}
	sder, skey, err := ca.issue("localhost", x509.ExtKeyUsageServerAuth,
		[]string{"localhost", "partner.test", "*.partner.test"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
	if err != nil {
		return nil, fmt.Errorf("throwaway server certificate: %w", err)
	}
	ca.server = tls.Certificate{Certificate: [][]byte{sder, der}, PrivateKey: skey}
	return ca, nil
}

// PEM returns the CA certificate in PEM, for the *.ca_file settings.
func (ca *CA) PEM() []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der}) }

// Pool returns a pool holding the CA, for RootCAs or client authentication.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// ServerTLS returns a new server configuration with the CA's server
// certificate, TLS 1.2 or later.
func (ca *CA) ServerTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ca.server}, MinVersion: tls.VersionTLS12}
}

// ClientCert issues a client certificate with common name cn and returns
// it (followed by the CA certificate) and its PKCS #8 key, in PEM.
func (ca *CA) ClientCert(cn string) (certPEM, keyPEM []byte, err error) {
	der, key, err := ca.issue(cn, x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("client certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("client key: %w", err)
	}
	certPEM = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.PEM()...)
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

func (ca *CA) issue(cn string, usage x509.ExtKeyUsage, dns []string, ips []net.IP) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    ca.cert.NotBefore,
		NotAfter:     ca.cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	return der, key, err
}

// serial returns a random 128-bit serial number (RFC 5280 §4.1.2.2).
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}
