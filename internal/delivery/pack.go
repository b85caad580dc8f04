package delivery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/herald-alerts/herald/alerts"
)

// A record of the deliveries and retry topics holds either one job (a JSON
// object, as Job.Encode writes it) or a pack of jobs of one alert:
//
//	{"alert": <the alert's bytes>, "jobs": [<a job without its alert>, ...]}
//
// The fan-out packs the jobs of an alert that go to the same partition, so
// that the alert's bytes travel, are authenticated, compressed, copied and
// scanned once per record rather than once per delivery. Records of one job
// are what Herald wrote before it packed jobs (a deliveries topic keeps them
// for days), and what it still writes for a job on its own: a retry, a
// dead letter, a notice. Writers pack with PackJobs; readers decode with
// DecodeJobs.

// MaxRecordJobs is the most jobs one record holds.
const MaxRecordJobs = 500

// EncodeBare returns the job's encoding without its alert: an element of a
// pack (PackJobs), which carries the alert once for all its jobs.
func (j Job) EncodeBare() ([]byte, error) {
	if j.plain() {
		return j.appendBare(), nil
	}
	w := jobWire(j)
	w.AlertJSON = nil
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	// The first `"alert":null` is the member (quotes inside the id string
	// before it are escaped), and a member follows it.
	i := bytes.Index(b, alertNull)
	if i < 0 || i+len(alertNull) >= len(b) || b[i+len(alertNull)] != ',' {
		return nil, fmt.Errorf("encode job %s: no alert member", j.ID)
	}
	return append(b[:i], b[i+len(alertNull)+1:]...), nil
}

// appendBare writes a plain job as EncodeBare does.
func (j *Job) appendBare() []byte { return j.appendFields(nil) }

// PackJobs returns the values of the records that carry bare, the
// encodings without their alert (EncodeBare) of jobs of the alert whose
// bytes are alert, in order: consecutive jobs share a pack of at most
// MaxRecordJobs jobs and MaxRecordBytes bytes; a job alone in its record
// is written as one job, with its alert. Every element of bare must be a
// JSON object with at least one member.
func PackJobs(alert []byte, bare [][]byte) [][]byte {
	out := make([][]byte, 0, 1+len(bare)/MaxRecordJobs)
	head := len(`{"alert":,"jobs":[]}`) + len(alert)
	for i := 0; i < len(bare); {
		// The jobs of the next record: [i, j).
		j, size := i+1, head+len(bare[i])
		for j < len(bare) && j-i < MaxRecordJobs && size+1+len(bare[j]) <= MaxRecordBytes {
			size += 1 + len(bare[j])
			j++
		}
		if j == i+1 {
			out = append(out, withAlert(alert, bare[i]))
			i = j
			continue
		}
		b := make([]byte, 0, size)
		b = append(b, `{"alert":`...)
		b = append(b, alert...)
		b = append(b, `,"jobs":[`...)
		for k := i; k < j; k++ {
			if k > i {
				b = append(b, ',')
			}
			b = append(b, bare[k]...)
		}
		out = append(out, append(b, "]}"...))
		i = j
	}
	return out
}

// withAlert returns the record of one job from its bare encoding: the
// alert as its first member, then the job's own.
func withAlert(alert, bare []byte) []byte {
	b := make([]byte, 0, len(alert)+len(bare)+10)
	b = append(b, `{"alert":`...)
	b = append(b, alert...)
	b = append(b, ',')
	return append(b, bare[1:]...)
}

// jobMember is the name of the one member every job has and nothing
// else in a record of jobs does (a held alert, a lineage, an attempt or
// the alert: not "subscribers"). A JSON string escapes its quotes, so it
// cannot hold this sequence.
var jobMember = []byte(`"subscriber":`)

// JobsIn estimates how many jobs a record of the deliveries or retry
// topics holds without decoding it, one per "subscriber" member: exact
// for what PackJobs and Job.Encode write, and between 1 and MaxRecordJobs
// whatever a record says. A consumer weighs a record by it to bound its
// batches (bus.Weigh), and DecodeJobs sizes a pack's jobs by it; nothing
// else depends on it.
func JobsIn(value []byte) int {
	return max(1, min(bytes.Count(value, jobMember), MaxRecordJobs))
}

// BadJob is a job of a pack that DecodeJobs refused while it took the
// others: Value is its bytes in the pack, as they are (without the pack's
// alert, so that they never read as the job the pack meant), Subscriber
// the partner it names, if it names one, and Err why it was refused.
//
// Delivery is the delivery the job names, when it names one for certain:
// its id is the one the pack's alert, its partner and its target make
// (ID), so that whoever reads the record (which a caller authenticated)
// can record that delivery's outcome. Only what names the delivery is set
// (ID, Alert, Subscriber, Incarnation, Channel, Target, Attempt): it is
// never a job to attempt. Nil when the job names no delivery for certain
// (no partner or target, an id of something else, or not an object).
type BadJob struct {
	Value      []byte
	Subscriber string
	Err        error
	Delivery   *Job
}

// packWire is a pack with its alert replaced by null, its jobs decoded
// at once, or (rawPackWire) one by one.
type packWire struct {
	Jobs []jobWire `json:"jobs"`
}

type rawPackWire struct {
	Jobs []json.RawMessage `json:"jobs"`
}

// DecodeJobs decodes and checks a record of the deliveries or retry
// topics, a job or a pack, decoding its alert once through cache (which may
// be nil). An error refuses the record whole: not a job, not a pack, or a
// pack whose alert does not decode. A job of a pack that fails its checks
// is returned in bad, named by its place (jobs[3]), and the pack's other
// jobs are returned as usual.
func DecodeJobs(value []byte, cache *AlertCache) (jobs []*Job, bad []BadJob, err error) {
	rest, raw, members, ok := splitRecord(value)
	if !ok || members&memberJobs == 0 {
		j, err := decodeJob(value, rest, raw, ok, cache)
		if err != nil {
			return nil, nil, err
		}
		return []*Job{j}, nil, nil
	}
	if members&memberOther != 0 {
		return nil, nil, errors.New("decode delivery jobs: a pack holds only alert and jobs")
	}
	a, sum, err := cache.decode(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("decode delivery jobs: alert: %w", err)
	}
	// Every job at once; should any of them not decode or fail its
	// checks, one by one, to set it aside with its bytes.
	// Sized once, as receipts are (receiptsIn).
	p := packWire{Jobs: make([]jobWire, 0, JobsIn(rest))}
	if decodeJSON(rest, &p) == nil {
		if len(p.Jobs) == 0 {
			return nil, nil, errors.New("decode delivery jobs: jobs: a pack holds at least one job")
		}
		jobs = make([]*Job, len(p.Jobs))
		for i := range p.Jobs {
			j := (*Job)(&p.Jobs[i])
			if (len(j.AlertJSON) > 0 && string(j.AlertJSON) != "null") || !j.with(raw, a, sum) {
				jobs = nil
				break
			}
			jobs[i] = j
		}
		if jobs != nil {
			return jobs, nil, nil
		}
	}
	var rp rawPackWire
	if err := decodeJSON(rest, &rp); err != nil {
		return nil, nil, fmt.Errorf("decode delivery jobs: %w", err)
	}
	if len(rp.Jobs) == 0 {
		return nil, nil, errors.New("decode delivery jobs: jobs: a pack holds at least one job")
	}
	for i, e := range rp.Jobs {
		j, err := decodeBare(e, raw, a, sum)
		if err != nil {
			x := BadJob{Value: []byte(e), Err: fmt.Errorf("jobs[%d]: %w", i, err)}
			if j != nil {
				x.Subscriber = j.Subscriber
				x.Delivery = j.delivery(a)
			}
			bad = append(bad, x)
			continue
		}
		jobs = append(jobs, j)
	}
	return jobs, bad, nil
}

// with gives j, a job of a pack, the pack's alert (raw, decoded as a with
// digest sum) and reports whether it then passes its checks.
func (j *Job) with(raw []byte, a *alerts.Alert, sum [32]byte) bool {
	j.AlertJSON, j.Alert, j.AlertDigest = raw, a, sum
	return j.check() == nil
}

// decodeBare decodes and checks one job of a pack, whose alert is raw,
// decoded as a with digest sum.
func decodeBare(e, raw []byte, a *alerts.Alert, sum [32]byte) (*Job, error) {
	var w jobWire
	if err := decodeJSON(e, &w); err != nil {
		// A value of the wrong type leaves the member unset and the
		// others decoded (encoding/json): what names the delivery may
		// still be there (BadJob.Delivery).
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			j := Job(w)
			j.AlertJSON = nil
			return &j, fmt.Errorf("decode delivery job: %w", err)
		}
		return nil, fmt.Errorf("decode delivery job: %w", err)
	}
	j := Job(w)
	if len(w.AlertJSON) > 0 && string(w.AlertJSON) != "null" {
		j.AlertJSON = nil
		return &j, errors.New("alert: a job of a pack has the pack's alert, not one of its own")
	}
	j.AlertJSON, j.Alert, j.AlertDigest = raw, a, sum
	if err := j.check(); err != nil {
		return &j, err
	}
	return &j, nil
}

// delivery returns what of j, a job of the pack of alert a that was
// refused, names its delivery (BadJob.Delivery), or nil when j names none
// for certain.
func (j *Job) delivery(a *alerts.Alert) *Job {
	if a == nil || j.Subscriber == "" || j.Target == "" || j.ID != ID(a.ID, j.Subscriber, j.Target) {
		return nil
	}
	return &Job{ID: j.ID, Alert: a, Subscriber: j.Subscriber, Incarnation: j.Incarnation,
		Channel: j.Channel, Target: j.Target, Attempt: max(j.Attempt, 0)}
}
