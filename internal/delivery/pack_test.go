package delivery_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
)

var packAlert = []byte(`{"id":"op-9",  "title":"Packed","severity":"minor","tlp":"GREEN","marking":"OFFICIAL","handling":{"code":"P"},"audience":{"sectors":["care"]}}`)

// packJobs returns n jobs of packAlert: plain ones, and every few one with
// each of the fields a plain job lacks.
func packJobs(n int) []delivery.Job {
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	jobs := make([]delivery.Job, n)
	for i := range jobs {
		sub := fmt.Sprintf("partner-%03d", i)
		target := "https://" + sub + ".example/hook"
		j := delivery.Job{ID: delivery.ID("op-9", sub, target), AlertJSON: packAlert, Subscriber: sub,
			Channel: delivery.ChannelWebhook, Target: target, Mode: delivery.ModeSigned}
		if i%3 != 0 { // and a third as written before jobs named it
			j.Incarnation = fmt.Sprintf("inc-%03d", i)
		}
		switch i % 5 {
		case 1:
			j.NotBefore = t0
		case 2:
			j.Lineage = &delivery.Lineage{Root: "root", RootIssuedAt: t0, Earlier: []alerts.Indicator{{Type: "email", Value: "x@y.example"}}}
		case 3:
			j.Held = []delivery.Held{{ID: "root", Title: "Root <&>"}}
			j.Mode = delivery.ModeCancelNotice
		}
		jobs[i] = j
	}
	return jobs
}

func bareOf(t *testing.T, jobs []delivery.Job) [][]byte {
	t.Helper()
	out := make([][]byte, len(jobs))
	for i, j := range jobs {
		b, err := j.EncodeBare()
		require.NoError(t, err)
		require.NotContains(t, string(b), `"alert"`)
		out[i] = b
	}
	return out
}

// TestPackJobs: the jobs of one alert go out in packs that carry the
// alert's bytes once, as published, and come back as the jobs each record
// of one job gives, in order, sharing one decoded alert.
func TestPackJobs(t *testing.T) {
	jobs := packJobs(2*delivery.MaxRecordJobs + 7)
	records := delivery.PackJobs(packAlert, bareOf(t, jobs))
	require.Len(t, records, 3, "at most MaxRecordJobs jobs a record")

	cache := delivery.NewAlertCache(4)
	var got []*delivery.Job
	for _, r := range records {
		require.Equal(t, 1, bytes.Count(r, packAlert), "the alert's bytes once a record, not re-encoded")
		js, bad, err := delivery.DecodeJobs(r, cache)
		require.NoError(t, err)
		require.Empty(t, bad)
		require.Equal(t, len(js), delivery.JobsIn(r), "JobsIn counts a pack's jobs")
		got = append(got, js...)
	}
	require.Len(t, got, len(jobs))
	for i, j := range jobs {
		v, err := j.Encode()
		require.NoError(t, err)
		want, err := delivery.DecodeJob(v, nil)
		require.NoError(t, err)
		require.Equal(t, want.ID, got[i].ID)
		require.Equal(t, want.Alert, got[i].Alert)
		want.Alert = got[i].Alert
		require.Equal(t, want, got[i], "job %d", i)
		require.Same(t, got[0].Alert, got[i].Alert, "one decode of the alert")
	}

	// A job alone is a record of one job, which DecodeJob reads too.
	one := delivery.PackJobs(packAlert, bareOf(t, jobs[:1]))
	require.Len(t, one, 1)
	j, err := delivery.DecodeJob(one[0], nil)
	require.NoError(t, err)
	require.Equal(t, 1, delivery.JobsIn(one[0]))
	require.Equal(t, jobs[0].ID, j.ID)
	require.Equal(t, "Packed", j.Alert.Title)

	// Large jobs: a record holds at most MaxRecordBytes.
	big := packJobs(40)
	for i := range big {
		big[i].Held = []delivery.Held{{ID: "root", Title: strings.Repeat("t", 30<<10)}}
		big[i].Mode = delivery.ModeCancelNotice
	}
	records = delivery.PackJobs(packAlert, bareOf(t, big))
	n := 0
	for _, r := range records {
		require.LessOrEqual(t, len(r), delivery.MaxRecordBytes)
		js, _, err := delivery.DecodeJobs(r, nil)
		require.NoError(t, err)
		n += len(js)
	}
	require.Equal(t, len(big), n)
	require.Greater(t, len(records), 2)
}

// TestDecodeJobsRefusesOnlyTheBadJob: a job of a pack that fails its
// checks is set aside, named by its place and as a record of its own, and
// the pack's other jobs are taken; a pack that is not one is refused whole.
func TestDecodeJobsRefusesOnlyTheBadJob(t *testing.T) {
	jobs := packJobs(4)
	bare := bareOf(t, jobs)
	bare[1] = []byte(`{"id":"msg_wrong","subscriber":"p","channel":"webhook","target":"t","mode":"signed","attempt":0}`)
	bare[2] = []byte(`{"id":"x","alert":{"id":"other"},"subscriber":"p","channel":"webhook","target":"t"}`)
	records := delivery.PackJobs(packAlert, bare)
	require.Len(t, records, 1)
	js, bad, err := delivery.DecodeJobs(records[0], nil)
	require.NoError(t, err)
	require.Len(t, js, 2)
	require.Equal(t, []string{jobs[0].ID, jobs[3].ID}, []string{js[0].ID, js[1].ID})
	require.Len(t, bad, 2)
	require.ErrorContains(t, bad[0].Err, "jobs[1]")
	require.ErrorContains(t, bad[0].Err, "does not match")
	require.ErrorContains(t, bad[1].Err, "jobs[2]")
	require.ErrorContains(t, bad[1].Err, "alert")
	// The bad jobs' bytes as they are in the pack, never with the pack's
	// alert (they must not read as the job the pack meant), and the
	// partner each names.
	require.Equal(t, string(bare[1]), string(bad[0].Value))
	require.Equal(t, string(bare[2]), string(bad[1].Value))
	require.Equal(t, "p", bad[0].Subscriber)
	_, err = delivery.DecodeJob(bad[0].Value, nil)
	require.ErrorContains(t, err, "no alert")

	for name, v := range map[string]string{
		"no jobs":          `{"alert":` + string(packAlert) + `,"jobs":[]}`,
		"another member":   `{"alert":` + string(packAlert) + `,"jobs":[{"id":"x"}],"id":"x"}`,
		"alert garbage":    `{"alert":[1],"jobs":[{"id":"x"}]}`,
		"jobs not a list":  `{"alert":` + string(packAlert) + `,"jobs":{"id":"x"}}`,
		"jobs without one": `{"jobs":[{"id":"x"}]}`,
	} {
		_, _, err := delivery.DecodeJobs([]byte(v), nil)
		require.Error(t, err, name)
	}

	// A job whose strings say "jobs" is a job.
	j := delivery.Job{ID: delivery.ID("op-9", "jobs", "jobs"), AlertJSON: packAlert, Subscriber: "jobs",
		Channel: delivery.ChannelEmail, Target: "jobs", Mode: delivery.ModeSigned}
	v, err := j.Encode()
	require.NoError(t, err)
	js, bad, err = delivery.DecodeJobs(v, nil)
	require.NoError(t, err)
	require.Empty(t, bad)
	require.Len(t, js, 1)
	require.Equal(t, "jobs", js[0].Subscriber)
}

// TestDecodeJobsNamesTheDeliveryOfABadJob: a refused job of a pack names
// its delivery (BadJob.Delivery) only when its id is the one the pack's
// alert, its partner and its target make, whatever else is wrong with it:
// a channel this reader does not know, or a member of the wrong type.
func TestDecodeJobsNamesTheDeliveryOfABadJob(t *testing.T) {
	jobs := packJobs(5)
	bare := bareOf(t, jobs)
	bare[0] = bytes.Replace(bare[0], []byte(`"channel":"webhook"`), []byte(`"channel":"sms"`), 1)
	bare[1] = bytes.Replace(bare[1], []byte(`"attempt":0`), []byte(`"attempt":"zero"`), 1)
	bare[2] = bytes.Replace(bare[2], []byte(jobs[2].ID), []byte(delivery.ID("op-8", jobs[2].Subscriber, jobs[2].Target)), 1)
	bare[3] = []byte(`"a string"`)
	records := delivery.PackJobs(packAlert, bare)
	require.Len(t, records, 1)
	js, bad, err := delivery.DecodeJobs(records[0], nil)
	require.NoError(t, err)
	require.Len(t, js, 1)
	require.Len(t, bad, 4)
	require.ErrorContains(t, bad[0].Err, `unknown channel "sms"`)
	require.ErrorContains(t, bad[1].Err, "attempt")
	for i, x := range bad[:2] {
		require.NotNil(t, x.Delivery, "jobs[%d]", i)
		d := x.Delivery
		require.Equal(t, []string{jobs[i].ID, "op-9", jobs[i].Subscriber, jobs[i].Incarnation, jobs[i].Target},
			[]string{d.ID, d.Alert.ID, d.Subscriber, d.Incarnation, d.Target})
		require.Zero(t, d.Attempt)
	}
	require.Equal(t, "sms", bad[0].Delivery.Channel)
	require.Nil(t, bad[2].Delivery, "an id of another alert names no delivery of this one")
	require.Nil(t, bad[3].Delivery, "not a job")
}

// FuzzDecodeJobs: whatever a record holds, DecodeJobs never panics, every
// job it returns passes the checks DecodeJob makes, and a record of one
// job decodes as DecodeJob decodes it.
func FuzzDecodeJobs(f *testing.F) {
	jobs := packJobs(6)
	for _, r := range delivery.PackJobs(packAlert, bareOfFuzz(jobs)) {
		f.Add(r)
	}
	v, _ := jobs[2].Encode()
	f.Add(v)
	f.Add([]byte(`{"alert":{"id":"a"},"jobs":[{},1,"x",{"id":"y"}]}`))
	f.Fuzz(func(t *testing.T, value []byte) {
		js, bad, err := delivery.DecodeJobs(value, nil)
		if err != nil {
			require.Empty(t, js)
			require.Empty(t, bad)
			return
		}
		for _, j := range js {
			again, err := json.Marshal(j)
			require.NoError(t, err)
			back, err := delivery.DecodeJob(again, nil)
			require.NoError(t, err, "a job DecodeJobs took passes DecodeJob's checks")
			require.Equal(t, j.ID, back.ID)
		}
		if len(js)+len(bad) == 1 && len(bad) == 0 {
			if one, err := delivery.DecodeJob(value, nil); err == nil {
				require.Equal(t, one.ID, js[0].ID)
			}
		}
	})
}

func bareOfFuzz(jobs []delivery.Job) [][]byte {
	out := make([][]byte, len(jobs))
	for i, j := range jobs {
		out[i], _ = j.EncodeBare()
	}
	return out
}

// BenchmarkDecodeJobs decodes the jobs of 100 partners of one alert, as
// records of one job each (DecodeJob, as before packing) and as one pack
// (DecodeJobs); b.N counts jobs. The alert is the bench's ~1 KB one.
func BenchmarkDecodeJobs(b *testing.B) {
	alert := []byte(`{"id":"bench-1","type":"alert","status":"actual","title":"Forced labour at hand car washes: cash-only payroll, workers housed on site","summary":"` +
		strings.Repeat("Indicators seen across the region. ", 20) + `","severity":"severe","tlp":"GREEN","marking":"OFFICIAL","handling":{"code":"P"},"audience":{"sectors":["car-washes"]}}`)
	jobs := make([]delivery.Job, 100)
	for i := range jobs {
		sub := fmt.Sprintf("partner-%03d", i)
		target := "https://" + sub + ".example/hook"
		jobs[i] = delivery.Job{ID: delivery.ID("bench-1", sub, target), AlertJSON: alert, Subscriber: sub,
			Channel: delivery.ChannelWebhook, Target: target, Mode: delivery.ModeSigned}
	}
	singles := make([][]byte, len(jobs))
	bare := make([][]byte, len(jobs))
	for i, j := range jobs {
		singles[i], _ = j.Encode()
		bare[i], _ = j.EncodeBare()
	}
	pack := delivery.PackJobs(alert, bare)
	if len(pack) != 1 {
		b.Fatalf("%d records", len(pack))
	}
	b.Run("records-of-one", func(b *testing.B) {
		cache := delivery.NewAlertCache(4)
		b.SetBytes(int64(len(singles[0])))
		for i := 0; b.Loop(); i++ {
			if _, err := delivery.DecodeJob(singles[i%len(singles)], cache); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pack", func(b *testing.B) {
		cache := delivery.NewAlertCache(4)
		b.SetBytes(int64(len(pack[0]) / len(jobs)))
		for i := 0; b.Loop(); i++ {
			if i%len(jobs) != 0 {
				continue // b.N counts jobs: one pack per 100
			}
			if js, _, err := delivery.DecodeJobs(pack[0], cache); err != nil || len(js) != len(jobs) {
				b.Fatal(err)
			}
		}
	})
}
