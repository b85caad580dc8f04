// Package view is the materialised view of Kafka that the roles answering
// questions (api, fanout) keep in an embedded bbolt store: who got an alert
// (status, rule 7's prior recipients), the alert list (with the alerts the
// fan-out quarantined), a partner's own deliveries and the audit trail,
// each answered in time proportional to the answer, not to the history
// (PRODUCT.md §6, issues 12–14).
//
// A process that runs the fan-out without the api role keeps a view of
// ScopeFanOut: the alerts and alert-ids topics and, of the receipts, the
// alert receipts and decisions — what Lookup and Published answer the fan-out — and none
// of the outcomes, acknowledgements, indexes or topics the api role reads.
//
// Kafka stays the source of truth. The view follows the topics alerts,
// pending, receipts, audit, quarantine and alert-ids (alerts, receipts and
// alert-ids for ScopeFanOut) from the offsets it stored, applies every authentic record
// (bus.Authentic; the others are skipped, their offsets still advance) in
// one write transaction per batch together with the next offsets, and is
// rebuilt from Kafka when its file is missing, was written by another
// schema version or for another scope, or does not match the cluster
// (topic prefix, partition counts, an offset beyond a high watermark, or a
// record at a stored place that is not the one applied: a recreated topic
// or another cluster), or when the publishing keys it authenticates with
// are not those it was built with (a key removed no longer vouches for the
// records it took; a key added vouches for records it skipped). Everything
// it stores is derived: a view rebuilt from
// scratch answers every query as the view kept live does.
//
// An alert is quarantined when an authentic record of the quarantine topic,
// its headers authentic too (bus.AuthenticHeaders; a record whose headers
// do not authenticate, among them every record written before Herald
// covered headers, is skipped), refused the very record the alerts topic
// published under its id (its source header names that record's place,
// and it holds the same digest)
// and the alert has no receipts: the fan-out refused it at ingest and it
// reaches no one. A copy of the alert written by someone else and refused
// as unattributed, or another alert refused under an id already fanned
// out (duplicate-id), is another record and marks nothing; an alert the
// view does not list is not listed for being quarantined.
//
// # Durability
//
// The store is written without fsync (bbolt NoSync, NoFreelistSync): after a
// crash of the process the operating system still holds every page written,
// so the file is consistent; only a crash of the machine can tear it. A
// state file beside the store records whether it was closed cleanly and the
// boot id of the machine that wrote it; a store not closed cleanly under
// another boot id (or where the boot id is unknown) is deleted and rebuilt
// from Kafka at Open.
//
// # On-disk layout (dir/view.db, schema version in meta/version)
//
//	meta           version, prefix (the topic prefix), partitions/<topic> (BE32),
//	               scope ("all" or "fanout"; absent: all), release.lag (BE64 nanoseconds:
//	               the longest a published alert was released after its list time)
//	offsets        <topic> 0x00 BE32(partition) → BE64(next offset) BE64(offset of the
//	               last record applied, -1 if none) [16]byte(its fingerprint)
//	published      <id> → JSON Published (first authentic record of the alerts topic)
//	published.raw  <id> → the record's value as published
//	release        <id> → JSON ReleaseState (the release log of the pending topic)
//	release.raw    <id> → the submitted alert's bytes
//	receipts       <id> → JSON of the receipts fold's alert: ledger.Meta, entry counts
//	               per state, acknowledgement count, time of the first receipt
//	entries        <id> 0x00 <subscriber> 0x00 <target> → binary ledger.Entry (its incarnation too) and the
//	               time its partner-index keys are sorted by
//	acks           <id> 0x00 <subscriber> → JSON ledger.Ack (each partner's kept by ledger.Ack.Replaces: its decided record's first)
//	list           <state byte> BE64(time) <id> → nil; state byte 'a' (every alert),
//	               'p' pending (expired ones too: expiry is judged at query time),
//	               'u' published, 'r' rejected, 'q' quarantined
//	list.key       <id> → <state byte> BE64(time): the alert's current place in list
//	partner        <subscriber> 0x00 BE64(time) <id> 0x00 <target> → nil, for entries
//	               a partner may see (decision deliver or notice, never withhold); the
//	               partner's reads keep, of those, the entries of its record's incarnation
//	               (ledger.Entry.Of, read from the entry: PartnerQuery.Incarnation)
//	partner.state  <subscriber> 0x00 <state> 0x00 BE64(time) <id> 0x00 <target> → nil
//	partner.channel <subscriber> 0x00 <channel> 0x00 BE64(time) <id> 0x00 <target> → nil
//	               (partner.state and partner.channel hold the entries partner holds)
//	pull.rev       <subscriber> → BE64(the decisions applied to the partner's pull
//	               entries): PullRevision
//	audit          BE64(at) BE32(partition) BE64(offset) → the record.Audit JSON
//	audit.actor    uvarint(len) <actor> <audit key> → nil
//	audit.action   uvarint(len) <action> <audit key> → nil
//	bindings       <id> → JSON record.Binding: the first authentic binding of the
//	               alert-ids topic under the id (the fan-out never writes another).
//	               Lookup and Retained answer from it the alert's digest and
//	               fan-out time once its receipts are gone
//	bindings.displaced <id> → JSON {"partition", "offset", "why"}: the latest record of
//	               alert-ids under a bound id that the view does not accept (not
//	               authentic, unreadable, another digest), until a copy of the binding
//	               follows it; Displaced answers them, the fan-out writes them again
//	quarantine     <id> 0x00 BE32(partition) BE64(offset) → JSON Quarantine: of the
//	               authentic records of the quarantine topic that refused the record
//	               of the alerts topic at that place, the one Quarantine.Before puts
//	               first. It marks the alert listed under <id> only when that record
//	               is the one published (Quarantine.Marks) and the alert has no
//	               receipts; it lists nothing by itself
//
// Times in keys are Unix nanoseconds with the sign bit flipped, big-endian,
// so that byte order is time order; every index is read newest first from a
// cursor, so a page costs O(limit).
package view
