// Package formats renders an alert in the formats partners' own tools read
// (PRODUCT.md §11): a STIX 2.1 bundle (OASIS STIX Version 2.1, with the
// OASIS TLP 2.0 marking-definition extension), a MISP event in the JSON that
// MISP's REST API and feeds take, and an OASIS CAP 1.2 alert message.
//
// Every renderer is a pure function of the alert and a Context: the same
// input gives the same bytes, so each format is rendered and signed once per
// alert. None of them ever writes the analyst fields issued_by or
// approved_by; partner-facing output names the agency (Context.Agency).
//
// An alert and the updates and cancels that follow it form a chain whose
// first alert is its root (Context.Root). Object ids in STIX and uuids in
// MISP are name-based UUIDs (RFC 9562 version 5) in the namespace
// Namespace, derived from the agency and the root id, so every alert of a
// chain renders new versions of the same objects:
//
//	name = kind NUL agency NUL root-id [NUL indicator-type NUL indicator-value]
//
// where kind is one of "report", "indicator", "note", "misp-event",
// "misp-event-report", "misp-attribute", or "marking-definition" for a
// statement marking, whose name ends NUL, id of the TLP marking that marks
// it, NUL, statement. The agency's STIX identity and
// MISP organisation use "identity" NUL agency and "organisation" NUL agency;
// a STIX bundle uses "bundle" NUL agency NUL alert-id (one bundle per
// alert). The agency is part of every name so that two agencies' alerts
// with the same analyst-chosen id never share an object; renaming the
// agency therefore starts new objects.
//
// The webhook JSON envelope (format "herald", PRODUCT.md §5) is not rendered
// here: it lives in internal/deliver/webhook.
package formats
