package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
)

// PublishingKeyFile returns where the publishing key of cfg lives:
// publishing.key_file; or, with the embedded broker, publishing.key beside
// kafka.embedded.data_dir, or, for an in-memory broker, in the user's cache
// folder under a name derived from kafka.embedded.listen — so that serve
// and the CLI pointed at the same broker find the same key with no setup.
func PublishingKeyFile(cfg *config.Config) (string, error) {
	if cfg.Publishing.KeyFile != "" {
		return cfg.Publishing.KeyFile, nil
	}
	if len(cfg.Kafka.Brokers) > 0 {
		return "", errors.New("publishing.key_file is required with kafka.brokers")
	}
	if dir := cfg.Kafka.Embedded.DataDir; dir != "" {
		return filepath.Join(dir, "publishing.key"), nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	name := "embedded-" + strings.NewReplacer(":", "-", "[", "", "]", "", "/", "-").Replace(cfg.Kafka.Embedded.Listen)
	return filepath.Join(cache, "herald", name, "publishing.key"), nil
}

// PublishingKeys loads the keyring that authenticates what Herald writes to
// Kafka. With the embedded broker and no publishing.key_file, the key is
// made on first use (see PublishingKeyFile); create says whether this
// caller may make it (serve and demo may; a CLI expects to find it).
func PublishingKeys(cfg *config.Config, create bool, log *slog.Logger) (*busauth.Keyring, error) {
	path, err := PublishingKeyFile(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Publishing.KeyFile != "" || !create {
		k, err := busauth.Load(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && cfg.Publishing.KeyFile == "" {
				return nil, fmt.Errorf("no publishing key at %s: it is made when `herald serve` first starts the embedded broker on %s; start serve first, or set publishing.key_file", path, cfg.Kafka.Embedded.Listen)
			}
			return nil, fmt.Errorf("publishing.key_file: %w", err)
		}
		return k, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("publishing key: %w", err)
	}
	k, created, err := busauth.LoadOrCreate(path)
	if err != nil {
		return nil, fmt.Errorf("publishing key: %w", err)
	}
	if created && log != nil {
		log.Info("made a publishing key for the embedded broker: it authenticates what Herald writes to Kafka", "file", path)
	}
	return k, nil
}

// OpenBus opens the bus cfg describes, authenticating with the publishing
// key. With no brokers configured it starts the embedded broker, unless
// client is set: then it connects to the embedded broker a running serve
// listens on, and never starts one.
func OpenBus(ctx context.Context, cfg *config.Config, client bool, log *slog.Logger) (*bus.Bus, error) {
	return openBus(ctx, cfg, client, log, nil)
}

// openBus is OpenBus; rejected, if not nil, is told of every record read
// that is not authentic (bus.Options.Rejected).
func openBus(ctx context.Context, cfg *config.Config, client bool, log *slog.Logger, rejected func(kafka.Message, error)) (*bus.Bus, error) {
	keys, err := PublishingKeys(cfg, !client, log)
	if err != nil {
		return nil, err
	}
	k := cfg.Kafka
	if client && len(k.Brokers) == 0 {
		k.Brokers = []string{k.Embedded.Listen}
	}
	var pw string
	if k.SASL.Mechanism != "" {
		if pw, err = config.ReadSecret(k.SASL.PasswordFile, "HERALD_KAFKA_SASL_PASSWORD"); err != nil {
			return nil, fmt.Errorf("kafka.sasl.password_file: %w", err)
		}
	}
	b, err := bus.Open(ctx, k, bus.Options{Password: pw, Log: log, Keyring: keys, Rejected: rejected})
	if err != nil {
		return nil, fmt.Errorf("open kafka: %w", err)
	}
	return b, nil
}

// LoadSigner loads the agency signing key named by the configuration. It
// returns (nil, nil) when signing.key_file is not set.
func LoadSigner(cfg *config.Config, now time.Time) (*pgp.Signer, error) {
	if cfg.Signing.KeyFile == "" {
		return nil, nil
	}
	pass, err := config.ReadSecret(cfg.Signing.PassphraseFile, "HERALD_SIGNING_PASSPHRASE")
	if err != nil {
		return nil, fmt.Errorf("signing.passphrase_file: %w", err)
	}
	armored, err := os.ReadFile(cfg.Signing.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("signing.key_file: %w", err)
	}
	s, err := pgp.LoadSigner(armored, []byte(pass), now)
	if err != nil {
		return nil, fmt.Errorf("signing.key_file %s: %w", cfg.Signing.KeyFile, err)
	}
	return s, nil
}

// ErrNoSigner says why delivery (or exporting the public key) cannot
// start without a signing key.
var ErrNoSigner = errors.New("signing.key_file is not set: Herald signs everything it sends and will not send unsigned (generate a key with `herald keys generate`)")
