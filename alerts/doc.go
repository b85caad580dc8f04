// Package alerts defines Herald's alert: the message an analyst issues and
// partners receive. It holds the model of PRODUCT.md §1, its validation
// (every bad field reported by name), the character rules for one-line
// fields and for text that every record with such fields applies
// (CheckLine, CheckText) and the rule for shortening such text (Clip),
// the JSON codec that rejects unknown fields, and
// the orderings of TLP (FIRST TLP 2.0), severity (OASIS CAP 1.2) and the UK
// Government Security Classifications markings Herald accepts.
//
// The package imports no other Herald package.
package alerts
