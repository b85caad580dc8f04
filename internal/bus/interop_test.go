package bus_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// kcat runs kcat with args and stdin, and returns its standard output. It
// fails the test when kcat is not installed: CI installs it.
func kcat(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is required for this test (apt-get install kcat): %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "kcat %v: %s", args, stderr.String())
	return string(out)
}

func TestKcatInteropWithEmbeddedBroker(t *testing.T) {
	b, _ := openEmbedded(t, "127.0.0.1:0", "")
	addr := b.Brokers()[0]
	ctx := t.Context()

	// kcat produces, Herald reads.
	kcat(t, "alert-1:first\nalert-2:second\n", "-b", addr, "-P", "-t", "herald.alerts", "-K", ":", "-H", "reason=kcat")
	var got []string
	require.NoError(t, b.ReadAll(ctx, bus.TopicAlerts, func(m kafka.Message) error {
		got = append(got, string(m.Key)+"="+string(m.Value)+"|"+bus.Header(m, "reason"))
		return nil
	}))
	slices.Sort(got)
	assert.Equal(t, []string{"alert-1=first|kcat", "alert-2=second|kcat"}, got)
	require.NoError(t, b.ReadAll(ctx, bus.TopicAlerts, func(m kafka.Message) error {
		assert.ErrorIs(t, b.Authenticate(m), busauth.ErrMissing, "kcat holds no publishing key")
		assert.False(t, b.Authentic(m))
		return nil
	}))

	// Herald produces (LZ4 on deliveries), kcat consumes.
	require.NoError(t, b.Producer(bus.TopicDeliveries).Write(ctx,
		kafka.Message{Key: []byte("acme"), Value: []byte("job-1"), Headers: []kafka.Header{{Key: "attempt", Value: []byte("1")}}},
		kafka.Message{Key: []byte("acme"), Value: []byte("job-2"), Headers: []kafka.Header{{Key: "attempt", Value: []byte("2")}}},
	))
	out := kcat(t, "", "-b", addr, "-C", "-t", "herald.deliveries", "-o", "beginning", "-e", "-q", "-f", "%k=%s|%h\n")
	auth := `herald-auth=v1=[0-9a-f]{12}:[A-Za-z0-9_-]{43},herald-auth-headers=v1=[0-9a-f]{12}:[A-Za-z0-9_-]{43}`
	assert.Regexp(t, `^acme=job-1\|attempt=1,`+auth+`\nacme=job-2\|attempt=2,`+auth+`\n$`, out,
		"every record Herald writes carries its authenticator, and one of its other headers")
	require.NoError(t, b.ReadAll(ctx, bus.TopicDeliveries, func(m kafka.Message) error {
		assert.NoError(t, b.AuthenticateHeaders(m))
		return nil
	}))
	// Replayed by kcat with the header copied, to another key: refused.
	kcat(t, "other:job-1\n", "-b", addr, "-P", "-t", "herald.deliveries", "-K", ":", "-H", "herald-auth="+strings.Split(strings.Split(out, "herald-auth=")[1], "\n")[0])
	var forged int
	require.NoError(t, b.ReadAll(ctx, bus.TopicDeliveries, func(m kafka.Message) error {
		if string(m.Key) == "other" {
			forged++
			assert.ErrorIs(t, b.Authenticate(m), busauth.ErrMismatch)
		}
		return nil
	}))
	assert.Equal(t, 1, forged)

	// kcat sees the topics Herald created.
	meta := kcat(t, "", "-b", addr, "-L")
	assert.Contains(t, meta, `topic "herald.subscribers" with 2 partitions`)
	assert.Contains(t, meta, "broker 0 at "+addr)
}

func TestSASLAgainstKfake(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.KfakeOpts(
		kfake.EnableSASL(),
		kfake.Superuser(config.SASLPlain, "plain-user", "plain-secret"),
		kfake.Superuser(config.SASLSCRAMSHA256, "scram256-user", "scram256-secret"),
		kfake.Superuser(config.SASLSCRAMSHA512, "scram512-user", "scram512-secret"),
	))
	for _, mech := range []string{config.SASLPlain, config.SASLSCRAMSHA256, config.SASLSCRAMSHA512} {
		t.Run(mech, func(t *testing.T) {
			user := map[string]string{config.SASLPlain: "plain", config.SASLSCRAMSHA256: "scram256", config.SASLSCRAMSHA512: "scram512"}[mech]
			cfg := c.Config()
			cfg.TopicPrefix = user + "."
			cfg.SASL = config.KafkaSASL{Mechanism: mech, Username: user + "-user"}
			opt := c.Options(t)
			opt.Password = user + "-secret"
			b := c.OpenWith(t, cfg, opt) // EnsureTopics: admin requests over the Transport
			roundTrip(t, b, "sasl-"+user)

			opt.Password = "wrong"
			bad, err := bus.Open(t.Context(), cfg, opt)
			require.NoError(t, err)
			defer bad.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			assert.ErrorIs(t, bad.Ping(ctx), kafka.SASLAuthenticationFailed, "a wrong password is refused")
			err = bad.Consume(ctx, "never", []string{bus.TopicDeliveries}, func(context.Context, []kafka.Message) error { return nil })
			assert.ErrorIs(t, err, kafka.SASLAuthenticationFailed, "a consumer that cannot authenticate stops with the reason")
		})
	}
}

// roundTrip writes through the Transport, consumes through the Dialer (a
// consumer group) and reads through the Client.
func roundTrip(t *testing.T, b *bus.Bus, group string) {
	t.Helper()
	ctx := t.Context()
	require.NoError(t, b.Producer(bus.TopicDeliveries).Write(ctx, messages(group, 3)...))
	var rec recorder
	stop := consumeInBackground(t, b, group, []string{bus.TopicDeliveries}, func(_ context.Context, msgs []kafka.Message) error {
		rec.add(msgs)
		return nil
	})
	require.Eventually(t, func() bool { return rec.len() >= 3 }, waitFor, tick)
	require.NoError(t, stop())
	n := 0
	require.NoError(t, b.ReadAll(ctx, bus.TopicDeliveries, func(kafka.Message) error { n++; return nil }))
	assert.Equal(t, 3, n)
}

// testCA writes a CA and a server certificate for 127.0.0.1 signed by it;
// it returns the server's TLS config and the CA file.
func testCA(t *testing.T) (*tls.Config, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herald test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kafka"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"kafka.test"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	require.NoError(t, err)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600))
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}},
	}, caFile
}

func TestTLSWithSCRAMAgainstKfake(t *testing.T) {
	srvTLS, caFile := testCA(t)
	c := kafkatest.Start(t, kafkatest.KfakeOpts(
		kfake.TLS(srvTLS),
		kfake.EnableSASL(),
		kfake.Superuser(config.SASLSCRAMSHA512, "herald", "s3cret"),
	))
	cfg := c.Config()
	cfg.TLS = config.KafkaTLS{Enabled: true, CAFile: caFile}
	cfg.SASL = config.KafkaSASL{Mechanism: config.SASLSCRAMSHA512, Username: "herald"}
	opt := c.Options(t)
	opt.Password = "s3cret"
	b := c.OpenWith(t, cfg, opt)
	roundTrip(t, b, "tls")

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for name, tc := range map[string]config.KafkaTLS{
		"system roots do not know the test CA": {Enabled: true},
		"wrong server name":                    {Enabled: true, CAFile: caFile, ServerName: "other.test"},
	} {
		cfg.TLS = tc
		bad, err := bus.Open(ctx, cfg, opt)
		require.NoError(t, err)
		assert.Error(t, bad.Ping(ctx), name)
		require.NoError(t, bad.Close())
	}
	cfg.TLS = config.KafkaTLS{Enabled: true, CAFile: caFile, ServerName: "kafka.test"}
	ok, err := bus.Open(ctx, cfg, opt)
	require.NoError(t, err)
	assert.NoError(t, ok.Ping(ctx), "ServerName is verified against the certificate")
	require.NoError(t, ok.Close())

	cfg.TLS = config.KafkaTLS{Enabled: true, CAFile: filepath.Join(t.TempDir(), "missing.pem")}
	_, err = bus.Open(ctx, cfg, opt)
	assert.ErrorContains(t, err, "kafka.tls.ca_file")
}

func TestProxyDropsConnectionsAndClientsRecover(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.WithProxy(), kafkatest.Brokers(3))
	b := c.Open(t, c.Config())
	ctx := t.Context()

	// The cluster advertises the proxy: every connection goes through it.
	md, err := (&kafka.Client{Addr: kafka.TCP(c.Addrs()[0])}).Metadata(ctx, &kafka.MetadataRequest{})
	require.NoError(t, err)
	var advertised []string
	for _, br := range md.Brokers {
		advertised = append(advertised, net.JoinHostPort(br.Host, strings.TrimSpace(itoa(br.Port))))
	}
	assert.ElementsMatch(t, c.Proxy.Addrs(), advertised)

	var rec recorder
	consumeInBackground(t, b, "proxy", []string{bus.TopicDeliveries}, func(_ context.Context, msgs []kafka.Message) error {
		rec.add(msgs)
		return nil
	})
	require.NoError(t, b.Producer(bus.TopicDeliveries).Write(ctx, messages("before", 10)...))
	require.Eventually(t, func() bool { return rec.len() >= 10 }, waitFor, tick)

	c.Proxy.Block()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	assert.Error(t, b.Ping(pctx), "brokers unreachable while blocked")
	cancel()
	c.Proxy.Unblock()
	require.Eventually(t, func() bool { return b.Ping(ctx) == nil }, waitFor, 50*time.Millisecond)

	c.Proxy.DropAll()
	require.NoError(t, b.Producer(bus.TopicDeliveries).Write(ctx, messages("after", 10)...), "the writer reconnects")
	require.Eventually(t, func() bool {
		n := 0
		for _, v := range rec.values() {
			if strings.HasPrefix(v, "after-") {
				n++
			}
		}
		return n >= 10
	}, waitFor, tick, "the consumer group recovers")
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }
