package demo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/herald-alerts/herald/internal/delivery"
)

// marker is the file that identifies a folder the demo made, and may
// therefore replace.
const marker = ".herald-demo"

// ErrOutDir marks an output folder the demo cannot or may not use: a
// usage error, not a failure of Herald.
var ErrOutDir = errors.New("unusable output folder")

// prepareOutDir makes dir ready to receive the output: created if missing,
// emptied if an earlier demo made it, refused if it holds anything else.
// It returns the absolute path.
func prepareOutDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("output folder %s: %w: %w", dir, ErrOutDir, err)
	}
	entries, err := os.ReadDir(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", fmt.Errorf("output folder %s: %w: %w", dir, ErrOutDir, err)
	case len(entries) == 0:
	default:
		if _, err := os.Stat(filepath.Join(abs, marker)); err != nil {
			return "", fmt.Errorf("output folder %s is not empty and was not made by herald demo (no %s file): refusing to overwrite it; choose another --out: %w",
				dir, marker, ErrOutDir)
		}
		if err := os.RemoveAll(abs); err != nil {
			return "", fmt.Errorf("replace output folder %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("create output folder %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(abs, marker), []byte("made by herald demo; the next run replaces this folder\n"), 0o644); err != nil {
		return "", fmt.Errorf("create output folder %s: %w", dir, err)
	}
	return abs, nil
}

// write puts the agency key, the partners, the alerts, everything received,
// the outcome table and a README into the output folder.
func (c *checker) write(agencyPub []byte, shown string) error {
	files := map[string][]byte{"agency.asc": agencyPub}
	for name, data := range c.files {
		files[name] = data
	}
	var subs []any
	for _, p := range c.partners {
		subs = append(subs, p.sub)
		if p.publicKey != nil {
			files["keys/"+p.sub.ID+".asc"] = p.publicKey
			files["keys/"+p.sub.ID+".secret.asc"] = p.secretKey
		}
	}
	pj, err := json.MarshalIndent(subs, "", "  ")
	if err != nil {
		return err
	}
	files["partners.json"] = append(pj, '\n')
	for _, a := range c.res.Alerts {
		aj, err := json.MarshalIndent(a.Alert, "", "  ")
		if err != nil {
			return err
		}
		files["alerts/"+a.Label+"-"+a.ID+".json"] = append(aj, '\n')
	}
	c.res.Hints = c.hints(shown)
	var table bytes.Buffer
	c.res.Print(&table)
	files["outcomes.txt"] = table.Bytes()
	files["README.txt"] = []byte(c.readme(shown))

	for name, data := range files {
		path := filepath.Join(c.res.OutDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".secret.asc") {
			mode = 0o600
		}
		if err := os.WriteFile(path, data, mode); err != nil {
			return err
		}
	}
	return nil
}

// hints are commands that verify examples of what arrived, as a partner
// would.
func (c *checker) hints(shown string) []string {
	var out []string
	pick := func(label, partner, channel, how string) *Row {
		for i, r := range c.res.Rows {
			if r.Alert == label && r.Partner == partner && r.Channel == channel && r.How == how && len(r.Files) > 0 {
				return &c.res.Rows[i]
			}
		}
		return nil
	}
	path := func(rel string) string { return filepath.Join(shown, filepath.FromSlash(rel)) }
	if r := pick("2", bank, delivery.ChannelEmail, delivery.ModeEncrypted); r != nil {
		out = append(out, fmt.Sprintf("herald verify email %s --key %s --secret-key %s",
			path(r.Files[0]), path("agency.asc"), path("keys/"+bank+".secret.asc")))
	}
	if r := pick("1", hotels, delivery.ChannelEmail, delivery.ModeSigned); r != nil {
		out = append(out, fmt.Sprintf("herald verify email %s --key %s", path(r.Files[0]), path("agency.asc")))
	}
	if r := pick("1", bank, delivery.ChannelWebhook, delivery.ModeSigned); r != nil {
		if p := c.partner(bank); p != nil && len(p.sub.Webhooks) > 0 {
			out = append(out, fmt.Sprintf("herald verify webhook %s --secret %s --key %s --tolerance 24h",
				path(r.Files[0]), p.sub.Webhooks[0].Secrets[0], path("agency.asc")))
		}
	}
	return out
}

func (c *checker) readme(shown string) string {
	var b strings.Builder
	b.WriteString(`What the Herald demo's partners received
=========================================

agency.asc            the agency's public signing key (throwaway, made for this run)
partners.json         the partner records the demo loaded (webhook secrets included: they are throwaway)
keys/ID.asc           a partner mailbox's public key; keys/ID.secret.asc its private key, to decrypt
alerts/N-ID.json      the alerts the demo published
email/N-ID-HOW.eml    each email as the partner's mail server received it (alert N, partner ID)
webhook/N-ID-HOW.http each webhook request as the partner's endpoint received it (raw HTTP)
outcomes.txt          the outcome table and the result of every check
`)
	if c.sandbox {
		b.WriteString(`sandbox/email/        what partners' mailboxes receive while ` + "`herald demo --serve`" + ` runs, as it arrives
sandbox/webhook/      what partners' webhook endpoints receive while it runs (raw HTTP)
`)
	}
	b.WriteString(`
Check them as a partner would:
`)
	for _, h := range c.res.Hints {
		b.WriteString("  " + h + "\n")
	}
	b.WriteString(`
gpg and sq verify the emails too: docs/examples/gpg/verify-email.sh, in Herald's repository,
cuts out the signed part and its signature, decrypts with a key from keys/ and runs both. From
the repository's root:
`)
	path := func(rel string) string { return filepath.Join(shown, filepath.FromSlash(rel)) }
	fmt.Fprintf(&b, "  sh docs/examples/gpg/verify-email.sh %s %s %s\n", path("email/2-"+bank+"-encrypted.eml"),
		path("agency.asc"), path("keys/"+bank+".secret.asc"))
	b.WriteString(`
A webhook's secrets are in partners.json. Webhook timestamps are checked against the current
time (five minutes either way): --tolerance lets an old capture through.
`)
	return b.String()
}

// Print writes the alerts, the outcome table, the summary and any
// failures.
func (r *Result) Print(w io.Writer) {
	if len(r.Brokers) > 0 {
		fmt.Fprintf(w, "Embedded Kafka broker:      %s (in memory)\n", strings.Join(r.Brokers, ","))
	}
	if r.SMTP != "" {
		fmt.Fprintf(w, "Partners' mail server:      smtp://%s (STARTTLS required, throwaway CA in smtp.ca_file)\n", r.SMTP)
	}
	if r.Webhooks != "" {
		fmt.Fprintf(w, "Partners' webhook receiver: %s/hooks/ID (HTTPS, throwaway CA in webhooks.ca_file; 127.0.0.0/8 in webhooks.allow_cidrs)\n\n", r.Webhooks)
	}
	fmt.Fprintf(w, "Alerts published (issued_by %s; TLP:AMBER and OFFICIAL-SENSITIVE approved by %s):\n", Analyst, SecondAnalyst)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, a := range r.Alerts {
		title := a.Title
		if len(a.References) > 0 {
			var refs []string
			for _, ref := range a.References {
				refs = append(refs, r.label(ref))
			}
			title += " (" + string(a.Type) + "s " + strings.Join(refs, ", ") + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", a.Label, a.ID, a.Type, a.TLP.Label(), a.Marking, title)
	}
	tw.Flush()
	fmt.Fprintln(w)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ALERT\tPARTNER\tTARGET\tDECISION\tHOW\tSTATE\tWHY\tVERIFIED")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Alert, row.Partner, row.Target, row.Decision, row.How,
			row.State, dash(row.Rule), row.Verified)
	}
	tw.Flush()
	fmt.Fprintln(w)

	var delivered, pulled, notices, withheld int
	for _, row := range r.Rows {
		switch {
		case row.Decision == delivery.Deliver && row.Channel == delivery.ChannelPull && row.Verified == "ledger":
			pulled++
		case row.Decision == delivery.Deliver && row.Verified == "yes":
			delivered++
		case row.Decision == delivery.Notice && row.Verified == "yes":
			notices++
		case row.Decision == delivery.Withhold:
			withheld++
		}
	}
	fmt.Fprintf(w, "%d targets: %d delivered with content, %d available to pull, %d content-free notices, %d withheld",
		len(r.Rows), delivered, pulled, notices, withheld)
	if r.OK() {
		fmt.Fprint(w, "; every signature verified as a partner would, every outcome as the policy requires")
	} else {
		fmt.Fprintf(w, "; %d check(s) FAILED", len(r.Failures))
	}
	if r.Elapsed > 0 {
		fmt.Fprintf(w, " (%.1fs)", r.Elapsed.Seconds())
	}
	fmt.Fprintln(w, ".")
	if !r.OK() {
		fmt.Fprintln(w, "\nFailed checks:")
		fs := append([]string(nil), r.Failures...)
		sort.Strings(fs)
		for _, f := range fs {
			fmt.Fprintf(w, "  - %s\n", f)
		}
	}
}

func (r *Result) label(id string) string {
	for _, a := range r.Alerts {
		if a.ID == id {
			return a.Label
		}
	}
	return id
}
