package api

import (
	"net/http"

	"github.com/herald-alerts/herald/internal/taxii"
)

// registerPull serves the partners' pull channel, the TAXII 2.1 server
// under /taxii2/ and the MISP feed under /misp/feed/ (PRODUCT.md §11),
// when the Server has one: partner tokens only, refused tokens recorded in
// the audit trail as for the API.
func (h *handler) registerPull(mux *http.ServeMux) {
	if h.Pull == nil {
		return
	}
	h.Pull.Register(mux, h.pullCaller, h.refuse)
}

// pullCaller identifies a token presented to the pull servers: its name,
// its role and, for a partner token, the subscriber it is bound to
// (api.tokens[].subscriber). The request log names the token.
func (h *handler) pullCaller(r *http.Request, presented string) (taxii.Caller, bool) {
	t, ok := h.identify(presented)
	if !ok {
		return taxii.Caller{}, false
	}
	if info, _ := r.Context().Value(infoKey{}).(*requestInfo); info != nil {
		info.token = t.name
	}
	return taxii.Caller{Name: t.name, Role: t.role, Subscriber: t.subscriber}, true
}
