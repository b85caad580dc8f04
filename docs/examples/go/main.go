// Command receiver is a partner's endpoint for Herald's webhooks
// (docs/partner-webhooks.md). It checks the Standard Webhooks signature of
// every request against the endpoint's secrets, ignores a delivery it has
// already processed, and answers 204; a request that does not verify gets
// 401.
//
//	WEBHOOK_SECRETS=whsec_… go run ./docs/examples/go
//
// Settings, from the environment:
//
//	WEBHOOK_SECRETS  the endpoint's whsec_ secrets, separated by spaces or commas
//	                 (two while secrets are being rotated); required
//	LISTEN           the address to listen on; default 127.0.0.1:8000
//	TLS_CERT, TLS_KEY  serve HTTPS with this certificate and key (Herald sends only
//	                 to https:// endpoints outside a development set-up)
//	SAVE_DIR         if set, keep each verified request's body as <webhook-id>.json and
//	                 its herald-pgp-signature header as <webhook-id>.pgp-signature
package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// event is the part of Herald's body this receiver reads; a real one
// stores the whole alert.
type event struct {
	Type   string `json:"type"`
	Notice string `json:"notice"` // set only on content-free notices
	Alert  struct {
		ID         string   `json:"id"`
		TLP        string   `json:"tlp"`
		Title      string   `json:"title"`
		References []string `json:"references"`
	} `json:"alert"`
}

func main() {
	var hooks []*standardwebhooks.Webhook
	for _, s := range strings.FieldsFunc(os.Getenv("WEBHOOK_SECRETS"), func(r rune) bool { return r == ' ' || r == ',' }) {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			log.Fatalf("WEBHOOK_SECRETS: %v", err)
		}
		hooks = append(hooks, wh)
	}
	if len(hooks) == 0 {
		log.Fatal("set WEBHOOK_SECRETS to the endpoint's whsec_ secret(s)")
	}
	listen := os.Getenv("LISTEN")
	if listen == "" {
		listen = "127.0.0.1:8000"
	}
	saveDir := os.Getenv("SAVE_DIR")

	// Delivery is at least once: keep the ids already processed (in a
	// database, for a few days, in a real receiver).
	var mu sync.Mutex
	seen := map[string]bool{}

	http.HandleFunc("POST /herald", func(w http.ResponseWriter, r *http.Request) {
		// Verify the exact bytes received, before any JSON parsing.
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		verified := false
		for _, wh := range hooks {
			// Verify also refuses a webhook-timestamp more than five
			// minutes away from this machine's clock.
			if wh.Verify(body, r.Header) == nil {
				verified = true
				break
			}
		}
		if !verified {
			log.Printf("refused a request from %s: invalid signature or timestamp", r.RemoteAddr)
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		id := r.Header.Get("webhook-id")
		mu.Lock()
		dup := seen[id]
		seen[id] = true
		mu.Unlock()
		if dup {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		var ev event
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, "not Herald's JSON", http.StatusBadRequest)
			return
		}
		if saveDir != "" && !strings.ContainsAny(id, `/\`) {
			_ = os.WriteFile(filepath.Join(saveDir, id+".json"), body, 0o644)
			_ = os.WriteFile(filepath.Join(saveDir, id+".pgp-signature"), []byte(r.Header.Get("herald-pgp-signature")), 0o644)
		}
		// Store the alert and act on it here. A notice means: treat every
		// alert in references as withdrawn.
		log.Printf("verified %s %s: alert %s TLP:%s %q notice=%q references=%v (%s)",
			id, ev.Type, ev.Alert.ID, ev.Alert.TLP, ev.Alert.Title, ev.Notice, ev.Alert.References, r.UserAgent())
		w.WriteHeader(http.StatusNoContent)
	})

	log.Printf("listening on %s, POST /herald", listen)
	if cert, key := os.Getenv("TLS_CERT"), os.Getenv("TLS_KEY"); cert != "" {
		log.Fatal(http.ListenAndServeTLS(listen, cert, key, nil))
	}
	log.Fatal(http.ListenAndServe(listen, nil))
}
