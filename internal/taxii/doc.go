// Package taxii serves partners the alerts they may pull (PRODUCT.md §11,
// §12): a TAXII 2.1 server (OASIS TAXII Version 2.1) under /taxii2/ and
// the same collection as a MISP feed under /misp/feed/, both read with a
// partner token (Bearer, or HTTP Basic with the token as password).
//
// A partner's collection holds the STIX 2.1 objects (internal/formats) of
// exactly the alerts whose pull decision, recorded by the fan-out, was
// deliver, and that the dissemination policy still lets the partner pull
// when it asks, judged again against its current record: a lowered
// clearance, a narrower pull max_tlp, a suspension or an expiry removes an
// alert at once. An update or cancel the partner may no longer have
// withdraws the alerts it supersedes (the pull channel's content-free
// notice). TLP:RED is never served.
//
// TAXII: discovery, one API root ("herald"), one collection per partner
// whose id is derived from the subscriber id (CollectionID), the
// objects, object, object versions and manifest endpoints with
// added_after, limit, next and the match[id], match[type], match[version]
// and match[spec_version] filters, the X-TAXII-Date-Added-First and
// X-TAXII-Date-Added-Last headers, the media type
// application/taxii+json;version=2.1 (406 for an Accept that does not
// allow it) and TAXII error messages. An object's date_added is when its
// alert was decided for the partner; objects shared by several alerts (the
// agency's identity, the TLP marking definitions) are added with the first.
//
// MISP feed: manifest.json, one <uuid>.json event per chain of alerts (an
// update renders a new version of its original's event, so the feed holds
// the latest the partner may have) and hashes.csv (the MD5 of each live
// attribute's value and its event's uuid), as PyMISP's feed generator
// writes them.
//
// Every first pull of an alert is recorded as an outcome receipt in state
// delivered on its pull target (see Server.Receipts), so status shows who
// pulled what and when.
package taxii
