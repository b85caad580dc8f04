package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/publish"
	"github.com/herald-alerts/herald/internal/view"
)

// ViewDir returns the folder of the process's materialised view, and
// whether it is a temporary one to remove at exit: view.dir;
// <kafka.embedded.data_dir>/view when the embedded broker persists; else a
// new temporary folder (the view is rebuilt from Kafka at every start).
func ViewDir(cfg *config.Config) (dir string, temporary bool, err error) {
	switch {
	case cfg.View.Dir != "":
		return cfg.View.Dir, false, nil
	case len(cfg.Kafka.Brokers) == 0 && cfg.Kafka.Embedded.DataDir != "":
		return filepath.Join(cfg.Kafka.Embedded.DataDir, "view"), false, nil
	}
	dir, err = os.MkdirTemp("", "herald-view-")
	if err != nil {
		return "", false, fmt.Errorf("view folder: %w", err)
	}
	return dir, true, nil
}

// ClientViewDir is where a CLI keeps its view of a cluster between
// commands: in the user's cache folder, under a name derived from the
// brokers and the topic prefix, so that each command only catches up.
func ClientViewDir(cfg *config.Config) string {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	where := cfg.Kafka.Embedded.Listen
	if len(cfg.Kafka.Brokers) > 0 {
		where = strings.Join(cfg.Kafka.Brokers, ",")
	}
	sum := sha256.Sum256([]byte(where + "\x00" + cfg.Kafka.TopicPrefix))
	return filepath.Join(cache, "herald", "view-"+hex.EncodeToString(sum[:8]))
}

// OpenView opens the whole view (view.ScopeAll) in dir; close removes a
// temporary one.
func OpenView(dir string, temporary bool, log *slog.Logger, now func() time.Time) (*view.View, func() error, error) {
	return openView(dir, temporary, view.ScopeAll, log, now)
}

// openView is OpenView keeping scope.
func openView(dir string, temporary bool, scope view.Scope, log *slog.Logger, now func() time.Time) (*view.View, func() error, error) {
	v, err := view.Open(dir, view.Options{Log: log.With("component", "view"), Now: now, Scope: scope})
	if err != nil {
		return nil, nil, err
	}
	return v, func() error {
		err := v.Close()
		if temporary {
			os.RemoveAll(dir)
		}
		return err
	}, nil
}

// ViewIndex answers the publisher's questions from the view, caught up
// first with what was written to the alerts, pending and alert-ids
// topics, so that a second publish right after the first sees it.
type ViewIndex struct{ V *view.View }

var _ publish.Index = ViewIndex{}

// Existing implements publish.Index.
func (x ViewIndex) Existing(ctx context.Context, id string) (*publish.Existing, error) {
	if err := x.V.Sync(ctx, bus.TopicAlerts, bus.TopicPending, bus.TopicAlertIDs); err != nil {
		return nil, err
	}
	ex := &publish.Existing{}
	p, okP := x.V.Published(id)
	if okP {
		ex.Published, ex.IssuedBy, ex.ApprovedBy = p.Digest, p.IssuedBy, p.ApprovedBy
		ex.Partition, ex.Offset = p.Partition, p.Offset
	}
	b, okB := x.V.Binding(id)
	ex.Bind(b)
	okP = okP || okB
	r, okR := x.V.Release(id)
	if okR {
		ex.Release = *r
	}
	if !okP && (!okR || r.Submitted == nil) {
		return nil, nil
	}
	return ex, nil
}

// Held implements publish.Index (view.View.Held), synced first with the
// alerts topic, so that a record retention deleted before the analyst
// published is not answered (the view reads the topic's log starts at
// each sync).
func (x ViewIndex) Held(ctx context.Context, id string) (*alerts.Alert, error) {
	if err := x.V.Sync(ctx, bus.TopicAlerts); err != nil {
		return nil, fmt.Errorf("alert %s as published: %w", id, err)
	}
	return x.V.Held(ctx, id)
}

// Lookup implements publish.Index and the ledger questions of the API
// and the fan-out, caught up with the receipts written before the call.
func (x ViewIndex) Lookup(ctx context.Context, ids []string) (map[string]*ledger.Alert, error) {
	if err := x.V.Sync(ctx, bus.TopicReceipts); err != nil {
		return nil, err
	}
	return x.V.Lookup(ctx, ids)
}
