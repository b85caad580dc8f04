// Package bus is Herald's only door to Kafka: producers, consumer groups,
// topic administration, whole-topic reads and the embedded development broker.
//
// It speaks the Apache Kafka wire protocol (https://kafka.apache.org/protocol)
// through github.com/segmentio/kafka-go, authenticates with SASL PLAIN
// (RFC 4616) or SCRAM-SHA-256/512 (RFC 5802, RFC 7677) and encrypts with TLS
// 1.2 or later (RFC 8446, RFC 5246). With no brokers configured, Open starts
// an embedded single-node broker (github.com/twmb/franz-go/pkg/kfake) that
// any Kafka client, kcat included, can reach.
//
// Delivery is at least once. Consume hands a batch of messages to a handler
// and commits their offsets only after the handler returned nil; a failed
// batch is fetched again from the last committed offset. Handlers must
// therefore be idempotent, which Herald's deterministic delivery ids make
// cheap. With the Pipeline option several batches are handled at once and
// still committed in order.
//
// Producers write synchronously (acks=all) and add nothing to a write's
// latency: a write goes out at once when its partition is idle, and the
// writes that arrive while a request to the partition is in flight go
// together in the next one, so batches grow with the backlog only.
//
// Topic names in this API are given without the configured prefix
// (TopicAlerts, RetryTopic(0), …); the Bus adds it.
package bus
