// Package bench is `herald bench`: it measures, in one process on one
// machine, what Herald's roles achieve against the raw transport limit.
//
//  1. Fan-out: delivery jobs written per second by fanout.Worker for one
//     alert matched against 100,000 partners (10 % matching, one email
//     address and one webhook each), into the embedded Kafka-protocol
//     broker; and the agency key's OpenPGP (RFC 9580) signatures per alert
//     for each webhook payload format (herald, stix, misp, cap: the
//     matching partners' webhooks take them in turn) and per email
//     message, counted by pgp.Signer.Ops while the jobs of that alert are
//     delivered through the webhook and email notifiers.
//  2. Webhook delivery end to end (publish → fan-out → deliver, Standard
//     Webhooks v1 signed) to loopback HTTP receivers, beside a raw net/http
//     client posting the same bodies to the same receivers (the reference
//     of the goal) and, for information, a raw fasthttp client doing the
//     same (webhook.raw_fasthttp, no goal); and the process's CPU time
//     (getrusage(2), user + system) over Herald's passes per delivery.
//  3. Email delivery end to end (RFC 3156 PGP/MIME signed) to a loopback
//     go-smtp sink (RFC 5321), beside a raw go-smtp client sending the same
//     messages over the same number of connections.
//  4. Latency from publication to webhook arrival, one alert at a time.
//  5. Peak resident set of the process during runs 1 to 3 (VmHWM).
//  6. The status question, GET /v1/alerts/{id}/deliveries, answered by the
//     api role from its view (internal/view) of a receipts topic holding an
//     alert's 1,000 receipts among a million others; and the rate at which
//     the view is rebuilt from scratch.
//  7. Peak resident set of `herald serve --roles fanout,deliver` in a
//     process of its own, with the broker outside it and 100,000 partners
//     registered.
//
// Loopback delivery needs webhooks.allow_insecure_loopback and
// webhooks.allow_cidrs 127.0.0.0/8; Run sets them, with a short retry
// schedule, on its own copy of the configuration.
package bench
