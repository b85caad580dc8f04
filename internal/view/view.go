package view

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sync/errgroup"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/record"
)

// Topics are the topics the view follows (without prefix).
var Topics = []string{bus.TopicAlerts, bus.TopicPending, bus.TopicReceipts, bus.TopicAudit, bus.TopicQuarantine, bus.TopicAlertIDs}

// Scope is what a view keeps.
type Scope int

const (
	// ScopeAll keeps everything the api role asks: the alerts, pending,
	// receipts, audit, quarantine and alert-ids topics.
	ScopeAll Scope = iota
	// ScopeFanOut keeps what the fan-out (and its key-expiry watch) asks:
	// Lookup and Published. It follows the alerts, receipts and
	// alert-ids topics only, and keeps of the receipts the alert receipts and the
	// decisions (every entry, without its outcomes: its state stays
	// pending), none of the outcomes (half of all receipts, one or more
	// per delivery), acknowledgements, partner indexes or the alert list.
	// List, PartnerDeliveries, Audit and Release answer ErrNotKept.
	ScopeFanOut
)

// topics returns the topics a view of this scope follows.
func (s Scope) topics() []string {
	if s == ScopeFanOut {
		return []string{bus.TopicAlerts, bus.TopicReceipts, bus.TopicAlertIDs}
	}
	return Topics
}

func (s Scope) String() string {
	if s == ScopeFanOut {
		return "fanout"
	}
	return "all"
}

// ErrNotKept is the answer of a query a view of ScopeFanOut cannot answer.
var ErrNotKept = errors.New("the view of this process keeps only what the fan-out needs (the api role keeps the whole view)")

// File names in the view's directory.
const (
	dbFile    = "view.db"
	stateFile = "view.state"
)

// maxTxRecords is how many records the writer gathers, at most, into one
// write transaction once more than one batch is waiting (a single fetch may
// bring more).
const maxTxRecords = 20000

// syncTimeout bounds Sync, as the subscriber registry's Sync is bounded.
const syncTimeout = 30 * time.Second

// ErrClosed is the answer of queries on a closed view.
var ErrClosed = errors.New("view is closed")

// Options are what Open needs besides the directory.
type Options struct {
	// Log receives the view's events; nil discards them.
	Log *slog.Logger
	// Now is the clock pending alerts expire by at query time; nil means
	// time.Now.
	Now func() time.Time
	// Scope is what the view keeps (ScopeAll by default). A store kept
	// in another scope is rebuilt.
	Scope Scope
}

// View is the materialised view of Herald's topics. Open it, call Run
// (once) to keep it in step with Kafka, query it from any goroutine, and
// Close it after Run returned.
type View struct {
	dir    string
	log    *slog.Logger
	now    func() time.Time
	scope  Scope
	topics []string // the topics it follows

	dbMu sync.RWMutex // guards db: queries and writes hold it shared, a wipe exclusive
	db   *bbolt.DB

	posMu    sync.Mutex
	pos      map[string]map[int]int64 // topic → partition → next offset applied
	followed map[string]int           // topic → partitions followed
	progress chan struct{}            // closed and replaced after every commit or wipe
	bus      *bus.Bus

	running atomic.Bool
	started chan struct{} // closed when Run began
	stopped chan struct{} // closed when Run returned
	ready   chan struct{}
	readyMu sync.Once
	resync  chan struct{}
	// displaced receives after a transaction that displaced a binding
	// (Displacements).
	displaced chan struct{}

	applied, skipped, malformed sync.Map // topic → *atomic.Int64
	txs, rebuilds               atomic.Int64

	// starts are the log start offsets of the alerts topic's partitions
	// last read (bus.Offsets): a record below its partition's start was
	// deleted by retention, so that a view rebuilt now would not hold it
	// (deleted). gone counts the times they moved (Revision.Gone).
	startsMu sync.RWMutex
	starts   map[int]int64
	gone     atomic.Int64
}

// startsEvery is how often a running view reads the alerts topic's log
// start offsets, besides each Sync.
const startsEvery = time.Minute

// noteStarts records the log start offsets of the alerts topic in offs,
// if any.
func (v *View) noteStarts(offs map[string][]bus.PartitionOffsets) {
	ps, ok := offs[bus.TopicAlerts]
	if !ok {
		return
	}
	v.startsMu.Lock()
	defer v.startsMu.Unlock()
	if v.starts == nil {
		v.starts = map[int]int64{}
	}
	moved := false
	for _, po := range ps {
		if po.Start > v.starts[po.Partition] {
			v.starts[po.Partition], moved = po.Start, true
		}
	}
	if moved {
		v.gone.Add(1)
	}
}

// deleted reports whether the record of the alerts topic at partition and
// offset was deleted by retention (below the log start last read): the
// view keeps what it applied, but answers as a view rebuilt now would.
func (v *View) deleted(partition int, offset int64) bool {
	v.startsMu.RLock()
	defer v.startsMu.RUnlock()
	return offset < v.starts[partition]
}

// watchStarts reads the alerts topic's log start offsets every
// startsEvery until ctx ends.
func (v *View) watchStarts(ctx context.Context, b *bus.Bus) error {
	t := time.NewTicker(startsEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		offs, err := b.Offsets(ctx, bus.TopicAlerts)
		if err != nil {
			v.log.Warn("view: cannot read the alerts topic's log start; will retry", "error", err)
			continue
		}
		v.noteStarts(offs)
	}
}

// Open opens (or creates) the view stored in dir/view.db. A store that does
// not hold this schema version, or that may have been torn by a machine
// crash (see the package documentation), is deleted: Run rebuilds it. A
// store in use by another process is an error.
func Open(dir string, opt Options) (*View, error) {
	v := &View{
		dir:      dir,
		log:      opt.Log,
		now:      opt.Now,
		scope:    opt.Scope,
		topics:   opt.Scope.topics(),
		pos:      map[string]map[int]int64{},
		progress: make(chan struct{}),
		started:  make(chan struct{}),
		stopped:  make(chan struct{}),
		ready:    make(chan struct{}),
		resync:   make(chan struct{}, 1),
		// One wake-up waits: the reader reads every displaced binding.
		displaced: make(chan struct{}, 1),
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if v.now == nil {
		v.now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open view: %w", err)
	}
	path := filepath.Join(dir, dbFile)
	st, err := readState(dir)
	if err != nil {
		return nil, fmt.Errorf("open view: %w", err)
	}
	boot := bootID()
	if _, err := os.Stat(path); err == nil && !st.Clean && (boot == "" || st.Boot != boot) {
		v.log.Warn("view store was not closed cleanly before the machine restarted: deleting it to rebuild from kafka", "path", path)
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("open view: %w", err)
		}
	}
	if err := writeState(dir, viewState{Clean: false, Boot: boot}); err != nil {
		return nil, fmt.Errorf("open view: %w", err)
	}
	if v.db, err = v.openDB(path); err != nil {
		return nil, fmt.Errorf("open view: %w", err)
	}
	return v, nil
}

// openDB opens the bbolt file at path with its buckets and schema version,
// deleting and creating it again when it cannot be read or holds another
// version.
func (v *View) openDB(path string) (*bbolt.DB, error) {
	opts := &bbolt.Options{
		Timeout: time.Second,
		// Address space, not memory: growing the file within it needs no
		// remap, which would wait for every reader.
		InitialMmapSize: 1 << 30,
		NoSync:          true,
		NoFreelistSync:  true,
		FreelistType:    bbolt.FreelistMapType,
	}
	for attempt := 0; ; attempt++ {
		db, err := bbolt.Open(path, 0o600, opts)
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%s is in use by another process", path)
		}
		if err == nil {
			var version, scope []byte
			err = db.Update(func(tx *bbolt.Tx) error {
				for _, name := range allBuckets {
					if _, err := tx.CreateBucketIfNotExists(name); err != nil {
						return err
					}
				}
				m := tx.Bucket(bMeta)
				version, scope = bytes.Clone(m.Get(kVersion)), bytes.Clone(m.Get(kScope))
				if version == nil && tx.Bucket(bOffsets).Stats().KeyN == 0 {
					version, scope = []byte(schemaVersion), []byte(v.scope.String())
					if err := m.Put(kScope, scope); err != nil {
						return err
					}
					return m.Put(kVersion, version)
				}
				if scope == nil {
					scope = []byte(ScopeAll.String()) // kept before scopes were
				}
				return nil
			})
			if err == nil && string(version) == schemaVersion && string(scope) == v.scope.String() {
				return db, nil
			}
			if err == nil && string(version) != schemaVersion {
				err = fmt.Errorf("schema version %q, not %q", version, schemaVersion)
			} else if err == nil {
				err = fmt.Errorf("kept for the %s scope, not %s", scope, v.scope)
			}
			_ = db.Close()
		}
		if attempt > 0 {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		v.log.Warn("view store unusable: deleting it to rebuild from kafka", "path", path, "error", err)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
}

// Close writes the store out and closes it, and records that it was closed
// cleanly. Call it after Run returned. Queries after Close return
// ErrClosed.
func (v *View) Close() error {
	v.dbMu.Lock()
	defer v.dbMu.Unlock()
	if v.db == nil {
		return nil
	}
	err := v.db.Sync()
	if cerr := v.db.Close(); err == nil {
		err = cerr
	}
	v.db = nil
	if err == nil {
		err = writeState(v.dir, viewState{Clean: true, Boot: bootID()})
	}
	if err != nil {
		return fmt.Errorf("close view: %w", err)
	}
	return nil
}

// read runs fn in a read transaction.
func (v *View) read(fn func(*bbolt.Tx) error) error {
	v.dbMu.RLock()
	defer v.dbMu.RUnlock()
	if v.db == nil {
		return ErrClosed
	}
	return v.db.View(fn)
}

// update runs fn in a write transaction.
func (v *View) update(fn func(*bbolt.Tx) error) error {
	v.dbMu.RLock()
	defer v.dbMu.RUnlock()
	if v.db == nil {
		return ErrClosed
	}
	return v.db.Update(fn)
}

// wipe deletes everything the view holds and starts an empty store.
func (v *View) wipe(reason string) error {
	v.log.Warn("rebuilding the view from kafka", "reason", reason)
	v.dbMu.Lock()
	defer v.dbMu.Unlock()
	if v.db == nil {
		return ErrClosed
	}
	path := v.db.Path()
	if err := v.db.Close(); err != nil {
		return fmt.Errorf("rebuild view: close: %w", err)
	}
	v.db = nil
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("rebuild view: %w", err)
	}
	db, err := v.openDB(path)
	if err != nil {
		return fmt.Errorf("rebuild view: %w", err)
	}
	v.db = db
	v.rebuilds.Add(1)
	// The log starts read were the old topics': records of a recreated
	// topic, or of another cluster, start again below them.
	v.startsMu.Lock()
	v.starts = nil
	v.startsMu.Unlock()
	v.gone.Add(1)
	v.posMu.Lock()
	v.pos = map[string]map[int]int64{}
	v.broadcastLocked()
	v.posMu.Unlock()
	return nil
}

// Displacements receives after the view applied a record of the alert-ids
// topic that displaced a binding (Displaced): one value waits however many
// transactions did, so that its one reader (the fan-out, which writes the
// bindings again) then reads them all. Nothing is sent while no binding is
// displaced.
func (v *View) Displacements() <-chan struct{} { return v.displaced }

// Ready is closed once the view has applied every record its topics held
// when Run began: the api role's /readyz waits for it.
func (v *View) Ready() <-chan struct{} { return v.ready }

// Run keeps the view in step with the topics until ctx ends, then returns
// nil. It rebuilds the view when the stored offsets do not fit the cluster
// (see the package documentation). It returns an error only when the store
// cannot be written. Call it once.
func (v *View) Run(ctx context.Context, b *bus.Bus) error {
	if !v.running.CompareAndSwap(false, true) {
		return errors.New("view: Run called twice")
	}
	v.posMu.Lock()
	v.bus = b
	v.posMu.Unlock()
	close(v.started)
	defer close(v.stopped)
	for {
		err := v.runOnce(ctx, b)
		var rebuild rebuildError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &rebuild):
			if err := v.wipe(rebuild.reason); err != nil {
				return err
			}
		case errors.Is(err, bus.ErrNotResumable), errors.Is(err, errCorrupt):
			if err := v.wipe(err.Error()); err != nil {
				return err
			}
		case errors.Is(err, errResync):
			v.log.Info("view: a topic gained partitions; checking the store again")
		default:
			return err
		}
	}
}

// rebuildError asks Run to wipe the store and start again.
type rebuildError struct{ reason string }

func (e rebuildError) Error() string { return "rebuild the view: " + e.reason }

var errResync = errors.New("resync")

// kafkaError is a failure to read from Kafka while checking the store:
// retried.
type kafkaError struct{ err error }

func (e kafkaError) Error() string { return e.err.Error() }
func (e kafkaError) Unwrap() error { return e.err }

// runOnce checks the store against the cluster and follows the topics
// until ctx ends or something asks for a rebuild.
func (v *View) runOnce(ctx context.Context, b *bus.Bus) error {
	var (
		offs map[string][]bus.PartitionOffsets
		from map[string]map[int]int64
	)
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		var err error
		if offs, err = b.Offsets(ctx, v.topics...); err == nil {
			from, err = v.check(ctx, b, offs)
		} else {
			err = kafkaError{err}
		}
		var kerr kafkaError
		if err == nil {
			break
		}
		if !errors.As(err, &kerr) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		v.log.Warn("view: cannot read the topics' offsets; will retry", "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}

	v.noteStarts(offs)
	targets := map[string]map[int]int64{}
	v.posMu.Lock()
	v.pos = map[string]map[int]int64{}
	v.followed = map[string]int{}
	for _, t := range v.topics {
		targets[t] = map[int]int64{}
		v.pos[t] = map[int]int64{}
		v.followed[t] = len(offs[t])
		for p, next := range from[t] {
			v.pos[t][p] = next
		}
		for _, po := range offs[t] {
			targets[t][po.Partition] = po.End
		}
	}
	// A Sync that began before the stored positions were known waits for
	// progress: they may already be what it waits for.
	v.broadcastLocked()
	v.posMu.Unlock()
	v.checkReady(targets)

	g, gctx := errgroup.WithContext(ctx)
	in := make(chan *batch, 2)
	for _, t := range v.topics {
		g.Go(func() error { return b.FollowFrom(gctx, t, from[t], v.decoder(gctx, b, t, in)) })
	}
	g.Go(func() error { return v.write(gctx, in, targets) })
	if slices.Contains(v.topics, bus.TopicAlerts) {
		g.Go(func() error { return v.watchStarts(gctx, b) })
	}
	g.Go(func() error {
		select {
		case <-gctx.Done():
			return nil
		case <-v.resync:
			return errResync
		}
	})
	return g.Wait()
}

// check compares what the store holds with the cluster. It returns a
// rebuildError when they do not fit, else the stored offsets per topic,
// and records the prefix and partition counts.
func (v *View) check(ctx context.Context, b *bus.Bus, offs map[string][]bus.PartitionOffsets) (map[string]map[int]int64, error) {
	prefix := b.Topic("")
	type place struct {
		topic     string
		partition int
		s         stored
	}
	var (
		storedPrefix []byte
		storedKeys   []byte
		keys         = keyringOf(b)
		counts       = map[string]int{}
		places       []place
	)
	err := v.read(func(tx *bbolt.Tx) error {
		m := tx.Bucket(bMeta)
		storedPrefix = bytes.Clone(m.Get(kPrefix))
		storedKeys = bytes.Clone(m.Get(kKeys))
		for _, t := range v.topics {
			if c := m.Get(partitionsKey(t)); len(c) == 4 {
				counts[t] = int(binary.BigEndian.Uint32(c))
			}
		}
		return tx.Bucket(bOffsets).ForEach(func(k, val []byte) error {
			i := bytes.IndexByte(k, 0)
			s, ok := decodeStored(val)
			if i < 0 || len(k) != i+5 || !ok {
				return corrupt("offset", k, errors.New("bad key or value"))
			}
			places = append(places, place{string(k[:i]), int(binary.BigEndian.Uint32(k[i+1:])), s})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if storedPrefix != nil && string(storedPrefix) != prefix {
		return nil, rebuildError{fmt.Sprintf("the topic prefix is %q, the view was built from %q", prefix, storedPrefix)}
	}
	if storedKeys != nil && string(storedKeys) != keys {
		// A key removed no longer vouches for the records the view took
		// on its word; a key added vouches for records it skipped.
		return nil, rebuildError{fmt.Sprintf("the publishing keys are %q, the view was authenticated with %q", keys, storedKeys)}
	}
	for t, n := range counts {
		if len(offs[t]) != n {
			return nil, rebuildError{fmt.Sprintf("topic %s%s has %d partitions, the view was built from %d", prefix, t, len(offs[t]), n)}
		}
	}
	from := map[string]map[int]int64{}
	for _, p := range places {
		var po *bus.PartitionOffsets
		for i := range offs[p.topic] {
			if offs[p.topic][i].Partition == p.partition {
				po = &offs[p.topic][i]
			}
		}
		where := fmt.Sprintf("%s%s[%d]", prefix, p.topic, p.partition)
		switch {
		case po == nil:
			return nil, rebuildError{fmt.Sprintf("%s does not exist (a recreated topic, or another cluster)", where)}
		case p.s.next > po.End:
			return nil, rebuildError{fmt.Sprintf("the view read %s up to offset %d, beyond its high watermark %d (a recreated topic, or another cluster)", where, p.s.next, po.End)}
		case p.s.fpOffset >= po.Start:
			// The last record applied must still be the one there. When
			// there is none (compacted away) it cannot be told; records
			// deleted by retention (below Start) cannot either.
			m, ok, err := b.ReadAt(ctx, p.topic, p.partition, p.s.fpOffset)
			if err != nil {
				return nil, kafkaError{err}
			}
			if ok && fingerprint(m) != p.s.fp {
				return nil, rebuildError{fmt.Sprintf("the record at %s@%d is not the one the view applied (a recreated topic, or another cluster)", where, p.s.fpOffset)}
			}
		}
		if from[p.topic] == nil {
			from[p.topic] = map[int]int64{}
		}
		from[p.topic][p.partition] = p.s.next
	}
	err = v.update(func(tx *bbolt.Tx) error {
		m := tx.Bucket(bMeta)
		if err := m.Put(kPrefix, []byte(prefix)); err != nil {
			return err
		}
		if err := m.Put(kKeys, []byte(keys)); err != nil {
			return err
		}
		for _, t := range v.topics {
			if err := m.Put(partitionsKey(t), binary.BigEndian.AppendUint32(nil, uint32(len(offs[t])))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("view: record topics: %w", err)
	}
	return from, nil
}

// keyringOf names the publishing keys b authenticates records with: their
// ids (never the keys), sorted and comma-separated, a retired key's
// followed by " retired" and its cutoffs; "" for none. What the view holds
// was authenticated with them, so it is kept under this name and rebuilt
// when it changes (check): when a key is added, removed or retired, or
// its cutoffs change, and so what it verifies.
func keyringOf(b *bus.Bus) string {
	k := b.Keyring()
	if k == nil {
		return ""
	}
	ids := k.IDs()
	slices.Sort(ids)
	for i, id := range ids {
		if c, retired := k.Retired(id); retired {
			ids[i] = strings.TrimSpace(id + " retired " + c.String())
		}
	}
	return strings.Join(ids, ",")
}

// fingerprint identifies a record by its content and timestamp, to tell
// whether the record at a stored offset is still the one applied.
func fingerprint(m kafka.Message) [16]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(m.Key)))
	h.Write(n[:])
	h.Write(m.Key)
	binary.BigEndian.PutUint64(n[:], uint64(m.Time.UnixMilli()))
	h.Write(n[:])
	h.Write(m.Value)
	var fp [16]byte
	copy(fp[:], h.Sum(nil))
	return fp
}

// batch is one fetch of one partition, decoded, on its way to the writer.
type batch struct {
	topic     string
	partition int
	next      int64
	last      int64 // offset of the last message; -1 when none
	fp        [16]byte
	recs      []*rec
	n         int // messages
	skipped   int // not authentic
	malformed int
	// unaccepted counts the recs that are records of alert-ids the view
	// does not accept (rec.unaccepted), among the skipped and malformed:
	// not applied, though applyBinding judges them.
	unaccepted int
}

// decoder returns FollowFrom's function for topic: it authenticates and
// decodes each batch and hands it to the writer.
func (v *View) decoder(ctx context.Context, b *bus.Bus, topic string, in chan<- *batch) func(bus.Batch) error {
	authentic := b.Authentic
	if topic == bus.TopicQuarantine {
		// A quarantine record is read for its headers (reason, error,
		// source): they must be Herald's too.
		authentic = b.AuthenticHeaders
	}
	return func(bt bus.Batch) error {
		out := &batch{topic: topic, partition: bt.Partition, next: bt.Next, last: -1, n: len(bt.Messages)}
		if n := len(bt.Messages); n > 0 {
			last := bt.Messages[n-1]
			out.last, out.fp = last.Offset, fingerprint(last)
		}
		out.recs = make([]*rec, 0, len(bt.Messages))
		// A record of alert-ids under an alert id that the view does not
		// accept binds nothing, but may displace a binding
		// (applyBinding): it goes to the writer too.
		unaccepted := func(m kafka.Message, why string) {
			if topic == bus.TopicAlertIDs && alerts.ValidID(string(m.Key)) {
				out.recs = append(out.recs, &rec{topic: topic, key: string(m.Key), partition: m.Partition, offset: m.Offset, time: m.Time, unaccepted: why})
				out.unaccepted++
			}
		}
		for _, m := range bt.Messages {
			if !authentic(m) {
				out.skipped++
				unaccepted(m, record.DisplacedUnauthentic)
				continue
			}
			if v.scope == ScopeFanOut && topic == bus.TopicReceipts && notDecided(m.Value) {
				continue // an outcome or acknowledgement: not kept
			}
			r, err := decode(topic, m)
			if err != nil {
				out.malformed++
				v.log.Warn("view: skipping a record it cannot read", "topic", m.Topic, "partition", m.Partition,
					"offset", m.Offset, "error", err)
				unaccepted(m, record.DisplacedUnreadable)
				continue
			}
			if r == nil {
				continue // says nothing the view keeps
			}
			out.recs = append(out.recs, r)
		}
		select {
		case in <- out:
		case <-ctx.Done():
		}
		return nil
	}
}

// write applies the batches from in, gathering those waiting into one
// transaction, until ctx ends.
func (v *View) write(ctx context.Context, in <-chan *batch, targets map[string]map[int]int64) error {
	for {
		var group []*batch
		select {
		case <-ctx.Done():
			return nil
		case b := <-in:
			group = append(group, b)
		}
		n := len(group[0].recs)
	gather:
		for n < maxTxRecords {
			select {
			case b := <-in:
				group = append(group, b)
				n += len(b.recs)
			default:
				break gather
			}
		}
		var out outcome
		err := v.update(func(tx *bbolt.Tx) (err error) {
			out, err = apply(tx, v.scope, group)
			return err
		})
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, ErrClosed) {
				return nil
			}
			return fmt.Errorf("view: apply %d records: %w", n, err)
		}
		if out.superseded {
			// Retained no longer answers a record it answered: as when
			// retention deletes one (Revision.Gone).
			v.gone.Add(1)
		}
		if out.displaced {
			select {
			case v.displaced <- struct{}{}:
			default: // one is waiting already
			}
		}
		v.txs.Add(1)
		v.posMu.Lock()
		for _, b := range group {
			v.pos[b.topic][b.partition] = b.next
			counter(&v.applied, b.topic).Add(int64(len(b.recs) - b.unaccepted))
			counter(&v.skipped, b.topic).Add(int64(b.skipped))
			counter(&v.malformed, b.topic).Add(int64(b.malformed))
		}
		v.broadcastLocked()
		v.posMu.Unlock()
		v.checkReady(targets)
	}
}

func counter(m *sync.Map, topic string) *atomic.Int64 {
	c, _ := m.LoadOrStore(topic, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// broadcastLocked wakes every Sync waiting for progress. posMu is held.
func (v *View) broadcastLocked() {
	close(v.progress)
	v.progress = make(chan struct{})
}

// reachedLocked reports whether every partition in offs was applied up to
// its high watermark, and which topic gained partitions the view does not
// follow (""). posMu is held.
func (v *View) reachedLocked(offs map[string]map[int]int64) (bool, string) {
	reached := true
	for t, parts := range offs {
		for p, end := range parts {
			if v.followed != nil && p >= v.followed[t] {
				return false, t
			}
			if end > 0 && v.pos[t][p] < end {
				reached = false
			}
		}
	}
	return reached, ""
}

// checkReady closes Ready once targets are reached.
func (v *View) checkReady(targets map[string]map[int]int64) {
	v.posMu.Lock()
	ok, _ := v.reachedLocked(targets)
	v.posMu.Unlock()
	if ok {
		v.readyMu.Do(func() { close(v.ready) })
	}
}

// Sync waits until every record written to topics (all the view's topics
// when none is given) before Sync was called has been applied, so that a
// question asked next sees it. It gives up after 30 s, when ctx ends or
// when Run returned. A topic the view does not follow (ScopeFanOut) is
// ErrNotKept. The fan-out calls it before deciding a batch that
// needs the history (Sync(ctx, bus.TopicReceipts)).
func (v *View) Sync(ctx context.Context, topics ...string) error {
	if len(topics) == 0 {
		topics = v.topics
	}
	for _, t := range topics {
		if !slices.Contains(v.topics, t) {
			// SyncTo would skip it: answering nil would claim what the
			// view cannot know.
			return fmt.Errorf("sync view with %s: %w", t, ErrNotKept)
		}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, syncTimeout, fmt.Errorf("not caught up within %s", syncTimeout))
	defer cancel()
	select {
	case <-v.started:
	case <-ctx.Done():
		return fmt.Errorf("sync view: Run has not started: %w", context.Cause(ctx))
	}
	v.posMu.Lock()
	b := v.bus
	v.posMu.Unlock()
	offs, err := b.Offsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("sync view: %w", err)
	}
	return v.SyncTo(ctx, offs)
}

// SyncTo is Sync to offsets the caller read (bus.Offsets of some of the
// view's topics, perhaps with other topics the caller waits for as well),
// so that one request serves several followers.
func (v *View) SyncTo(ctx context.Context, offs map[string][]bus.PartitionOffsets) error {
	ctx, cancel := context.WithTimeoutCause(ctx, syncTimeout, fmt.Errorf("not caught up within %s", syncTimeout))
	defer cancel()
	select {
	case <-v.started:
	case <-ctx.Done():
		return fmt.Errorf("sync view: Run has not started: %w", context.Cause(ctx))
	}
	v.noteStarts(offs)
	want := map[string]map[int]int64{}
	var topics []string
	for t, ps := range offs {
		if !slices.Contains(v.topics, t) {
			continue
		}
		topics = append(topics, t)
		want[t] = map[int]int64{}
		for _, po := range ps {
			want[t][po.Partition] = po.End
		}
	}
	for {
		v.posMu.Lock()
		reached, grown := v.reachedLocked(want)
		progress := v.progress
		v.posMu.Unlock()
		if reached {
			return nil
		}
		if grown != "" {
			select {
			case v.resync <- struct{}{}:
			default:
			}
		}
		select {
		case <-progress:
		case <-v.stopped:
			return errors.New("sync view: the view stopped following kafka")
		case <-ctx.Done():
			return fmt.Errorf("sync view: not caught up with %s: %w", strings.Join(topics, ", "), context.Cause(ctx))
		}
	}
}

// Stats are counts since Open, for metrics and tests.
type Stats struct {
	// Applied counts the authentic records applied, per topic.
	Applied map[string]int64
	// Skipped counts the records that were not authentic, per topic.
	Skipped map[string]int64
	// Malformed counts authentic records the view could not read.
	Malformed map[string]int64
	// Transactions counts write transactions.
	Transactions int64
	// Rebuilds counts the times the store was wiped to be rebuilt while
	// running.
	Rebuilds int64
}

// Stats returns the counts since Open.
func (v *View) Stats() Stats {
	s := Stats{Applied: map[string]int64{}, Skipped: map[string]int64{}, Malformed: map[string]int64{},
		Transactions: v.txs.Load(), Rebuilds: v.rebuilds.Load()}
	for _, t := range v.topics {
		s.Applied[t] = counter(&v.applied, t).Load()
		s.Skipped[t] = counter(&v.skipped, t).Load()
		s.Malformed[t] = counter(&v.malformed, t).Load()
	}
	return s
}

// viewState is the state file beside the store.
type viewState struct {
	// Clean is true once Close wrote the store out.
	Clean bool `json:"clean"`
	// Boot is the boot id of the machine that last opened the store.
	Boot string `json:"boot"`
}

func readState(dir string) (viewState, error) {
	var s viewState
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if json.Unmarshal(b, &s) != nil {
		return viewState{}, nil // unreadable: not clean
	}
	return s, nil
}

// writeState replaces the state file durably.
func writeState(dir string, s viewState) error {
	b, _ := json.Marshal(s)
	tmp := filepath.Join(dir, stateFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, stateFile))
	}
	if err == nil {
		if d, derr := os.Open(dir); derr == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(dir, stateFile), err)
	}
	return nil
}

// bootID identifies the running boot of the machine (Linux), or "".
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
