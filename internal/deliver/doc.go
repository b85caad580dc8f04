// Package deliver is Herald's delivery runner (PRODUCT.md §4): it consumes
// delivery jobs from Kafka, re-checks the dissemination policy, hands each
// job to the notifier of its channel (internal/deliver/email,
// internal/deliver/webhook), and writes every outcome back to Kafka:
// receipts, durable retries on the retry-tier topics, dead letters, and
// the disabling of endpoints that answered HTTP 410 Gone (RFC 9110
// §15.5.11). Retry-After (RFC 9110 §10.2.3) is honoured within the
// schedule's bounds.
//
// # Only Herald's jobs
//
// Every job record read, from the deliveries topic or a retry tier, must
// carry a valid herald-auth authenticator (bus.Authenticate, PRODUCT.md §3
// rule 1). One that does not — written by a Kafka client that is not
// Herald — is never attempted and writes no receipt: it goes to the dead
// topic as it is, with reason "unattributed" (like an undecodable record,
// reason "invalid"), and its offset is committed with its batch.
//
// # Packs
//
// A record of the deliveries topic may pack many jobs of one alert
// (delivery.PackJobs, written by the fan-out for the partners of one
// partition). Each of its jobs is attempted and recorded on its own, and
// the record's offset is committed with its batch once every one of them
// has its outcome written. A job of a pack that fails its checks goes to
// the dead topic alone, as its bytes in the pack under a "~refused/" key
// that ListDead never takes for a job; the others are delivered. A batch
// holds about kafka.consumer.commit_batch jobs however they are packed
// (bus.Weigh), and the reader fetches at most deliveriesQueue records
// ahead (bus.Queue).
//
// # At least once
//
// Every topic is read through a consumer group (bus.Consume). A batch's
// offsets are committed only when the handler returns nil, and it returns
// nil only after every job of the batch has its outcome written and
// acknowledged (acks=all): a receipt, and where the job goes on, its retry
// or dead-letter record. Dead letters (and endpoint states) are written
// before the receipts that tell of them, so a "dead" receipt never names a
// dead letter that was not written; retry jobs after the receipts, so the
// "retrying" receipt is in the receipts topic before the retry's own
// outcome can follow it (receipts are folded in topic order). A worker killed
// at any instant therefore loses nothing; jobs whose outcome was written
// but whose offsets were not committed run again with the same delivery
// id, which receivers use to drop duplicates. Two batches of the deliveries topic are handled at once
// (bus.Pipeline): the next batch's attempts start while the last ones of
// the batch before run and its outcomes are written; offsets are still
// committed in order, each batch's only after its own outcomes and those of
// every batch before it were written.
//
// Outcomes are written as soon as they are settled, not when the whole
// batch is: the partitions of a batch run side by side and each writes its
// own outcomes when its jobs are done, so a retry-tier job waiting hours
// for its time in one partition never holds back the receipts of jobs from
// other partitions fetched with it. Within a partition, before waiting
// longer than Hold for a job that is not yet due, the runner first writes
// the outcomes of the jobs before it.
//
// # Retry tiers
//
// Retry tier i (topic retry.i) holds jobs waiting about Schedule[i]. Every
// job of a tier waits about the same, so a tier is (up to jitter) ordered
// by due time, and its consumer only has to wait for the job at the head of
// each partition: it sleeps until that job's NotBefore without leaving the
// group (kafka-go heartbeats from its own goroutine) and wakes at once on
// shutdown. Each tier has its own consumer group (Group + "." + topic), so
// a tier holding a batch for two hours never delays the deliveries topic or
// a shorter tier: a job due in 10 s never waits behind one due in 2 h.
// Within a batch, a later job due within TierHold is waited for; one due
// later than that, or later than the tier's wait plus jitter (an alert's
// not_before days ahead, a long Retry-After), is forwarded without an
// attempt to the largest tier whose wait fits its remaining time, and hops
// down the tiers until due. On shutdown, waiting jobs are forwarded the
// same way, so the batch still commits promptly.
//
// Attempt n (0-based count of earlier failures) that fails temporarily
// waits Schedule[n] with ±Jitter, at least the receiver's Retry-After and
// never longer than the last tier; after len(Schedule) retries the job is
// dead.
//
// # One slow endpoint does not hold up the others
//
// A batch cannot commit before its slowest job ends, so the runner bounds
// how long a job can hold a batch:
//   - every attempt has a deadline (AttemptTimeout);
//   - a per-endpoint circuit breaker (endpoint = webhook host, or "smtp"
//     for the relay) opens after Breaker.Failures consecutive temporary
//     failures; jobs for an open circuit are rescheduled to a retry tier at
//     once, without an attempt (their attempt count is unchanged), and one
//     half-open trial runs after Breaker.Cooldown;
//   - at most PerEndpoint attempts run per endpoint and Concurrency per
//     process; while an endpoint has an attempt handed off by an earlier
//     batch (below), its jobs are rescheduled at once, so a hanging
//     endpoint holds at most one batch per AttemptTimeout until its
//     circuit opens;
//   - hand-off: when at most a tenth of a batch's jobs (or one) are left
//     and have run Grace, or four times the slowest finished job, whichever
//     is longer — or Hold after the batch began waiting in any case — the
//     batch stops waiting. Jobs not yet started are re-queued, due at once,
//     to retry tier 0 without an attempt; an attempt still running is left
//     to finish in the
//     background, and a lease (a copy of the job, due after the attempt's
//     deadline) is written to a retry tier before the batch commits. The
//     background attempt writes its own outcome; when its lease comes back
//     to this process it is dropped. If the process died meanwhile, the
//     lease runs the job again: nothing is lost.
//
// Rescheduling without an attempt writes no receipt: the job's last
// receipt (pending or retrying) still tells its state.
//
// # Policy at delivery time
//
// A job is re-evaluated against the subscriber's current record when it is
// attempted: a partner suspended, whose clearance dropped, whose target was
// removed or disabled since fan-out gets nothing (outcome withheld, with the
// rule). Cancel notices carry no content and are only stopped by
// suspension or a removed or disabled target.
//
// # Dead letters and replay
//
// Dead letters carry the job with its attempt history and a reason
// header. Replay re-queues a dead job to the deliveries topic with its
// attempt count reset and history kept. Delivered is final: a delivery
// with any delivered outcome receipt is never replayed, even when a
// duplicate attempt dead-lettered it afterwards; nor is one whose latest
// outcome receipt is no longer dead (it was replayed since), so replaying
// twice sends nothing again. Only what Herald wrote counts: receipts and
// dead letters that fail authentication are ignored (ListDead lists the
// latter as "unauthenticated"), and an unattributed job is never replayed.
// Its dead letter is keyed "~unattributed/" + the original key, which
// Herald's authenticator covers, so that no copy of it with other headers
// passes for a dead job.
//
// # Endpoints that answered 410 Gone
//
// A webhook that answers 410 is disabled by an endpoint state
// (subscribers.EndpointState, by "herald:deliver") written with the batch's
// outcomes under its own key (subscribers.EndpointKey) in the subscribers
// topic. The partner's record is never written back, so an
// administrator's change to it made at the same moment (a suspension
// above all) stands whatever the order; the subscribers.Registry applies
// the state on top of the record. The runner applies the state to its own
// registry as soon as it is written, before the "disabled" receipt is, so
// that whoever reads that receipt and publishes again finds the endpoint's
// next job withheld. An administrator re-enables the endpoint by writing a
// state with Disabled false under the same key.
package deliver
