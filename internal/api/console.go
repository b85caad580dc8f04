package api

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/record"
)

// web holds the console's templates and its static script and style.
//
//go:embed web/*.html web/static/*
var web embed.FS

// The console's pages. Each is web/<name>.html inside web/layout.html;
// the page's script (web/static/console.js) calls the API with the token
// the analyst signed in with, kept in the tab's sessionStorage.
const (
	pageDesk     = "desk"     // the alert list, state tiles, alerts awaiting my approval
	pageCompose  = "compose"  // write, preview and publish an alert
	pageStatus   = "status"   // one alert's release state and deliveries
	pagePartners = "partners" // the partner directory (administrators)
	pagePartner  = "partner"  // one partner's record, status and endpoints (administrators)
	pageAudit    = "audit"    // the audit trail with filters (administrators)
)

// pages are the console's parsed templates.
type pages struct {
	tmpl   map[string]*template.Template
	static fs.FS
}

// pageData is what a console page renders. html/template escapes every
// field for the context it appears in.
type pageData struct {
	Title   string
	Page    string
	ID      string // the alert or partner id in the path, as given
	Valid   bool   // whether ID is a well-formed id
	Problem string
	// Audit is the audit page's filters, as given in the query.
	Audit auditFilters
	// Actions are the audit trail's actions, for the filter.
	Actions []string
}

// auditFilters are the query parameters of the audit page, passed on to
// GET /v1/audit by the script.
type auditFilters struct {
	Actor, Action, Object, Since, Until string
}

// notAnID is what a page says of an id that cannot be one.
const notAnID = "That is not an id: ids are letters, digits, '.', '_' and '-', at most 64."

// mustPages parses the embedded templates; they are part of the binary,
// so a failure is a programming error.
func mustPages() *pages {
	p := &pages{tmpl: map[string]*template.Template{}}
	for _, name := range []string{pageDesk, pageCompose, pageStatus, pagePartners, pagePartner, pageAudit} {
		p.tmpl[name] = template.Must(template.New(name).ParseFS(web, "web/layout.html", "web/"+name+".html"))
	}
	static, err := fs.Sub(web, "web/static")
	if err != nil {
		panic("api: console assets: " + err.Error())
	}
	p.static = static
	return p
}

// register adds the console's routes to mux.
func (p *pages) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", p.serveDesk)
	mux.HandleFunc("GET /compose", p.serveCompose)
	mux.HandleFunc("GET /status", p.serveLookup)
	mux.HandleFunc("GET /status/{id}", p.serveStatus)
	mux.HandleFunc("GET /partners", p.servePartners)
	mux.HandleFunc("GET /partners/{id}", p.servePartner)
	mux.HandleFunc("GET /audit", p.serveAudit)
	mux.HandleFunc("GET /static/{file}", p.serveStatic)
}

// serveStatic serves one embedded asset by name; there are no listings.
func (p *pages) serveStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	st, err := fs.Stat(p.static, name)
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	http.ServeFileFS(w, r, p.static, name)
}

// render executes the page into a buffer first, so that a template error
// gives a clean 500 rather than half a page.
func (p *pages) render(w http.ResponseWriter, status int, d pageData) {
	var buf bytes.Buffer
	if err := p.tmpl[d.Page].ExecuteTemplate(&buf, "layout", d); err != nil {
		http.Error(w, "render page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// serveDesk renders the analyst's desk: state tiles, the alerts awaiting
// the analyst's approval, and the alert list.
func (p *pages) serveDesk(w http.ResponseWriter, r *http.Request) {
	p.render(w, http.StatusOK, pageData{Title: "Desk", Page: pageDesk})
}

// serveCompose renders the page to write, preview and publish an alert.
func (p *pages) serveCompose(w http.ResponseWriter, r *http.Request) {
	p.render(w, http.StatusOK, pageData{Title: "New alert", Page: pageCompose})
}

// serveLookup renders the status lookup form, or sends a submitted id on
// to its status page.
func (p *pages) serveLookup(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if id == "" {
		p.render(w, http.StatusOK, pageData{Title: "Alert status", Page: pageStatus})
		return
	}
	if !alerts.ValidID(id) {
		p.render(w, http.StatusNotFound, pageData{Title: "Alert status", Page: pageStatus, ID: id, Problem: notAnID})
		return
	}
	http.Redirect(w, r, "/status/"+url.PathEscape(id), http.StatusSeeOther)
}

// serveStatus renders the status page of one alert; the page's script
// asks the API for its release state and deliveries.
func (p *pages) serveStatus(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d := pageData{Title: "Alert " + id, Page: pageStatus, ID: id, Valid: alerts.ValidID(id)}
	status := http.StatusOK
	if !d.Valid {
		d.Problem, status = notAnID, http.StatusNotFound
	}
	p.render(w, status, d)
}

// servePartners renders the partner directory.
func (p *pages) servePartners(w http.ResponseWriter, r *http.Request) {
	p.render(w, http.StatusOK, pageData{Title: "Partners", Page: pagePartners})
}

// servePartner renders one partner's record page.
func (p *pages) servePartner(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d := pageData{Title: "Partner " + id, Page: pagePartner, ID: id, Valid: alerts.ValidID(id)}
	status := http.StatusOK
	if !d.Valid {
		d.Problem, status = notAnID, http.StatusNotFound
	}
	p.render(w, status, d)
}

// serveAudit renders the audit trail page with the filters in the query.
func (p *pages) serveAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.render(w, http.StatusOK, pageData{Title: "Audit trail", Page: pageAudit, Actions: record.Actions,
		Audit: auditFilters{Actor: q.Get("actor"), Action: q.Get("action"), Object: q.Get("object"),
			Since: q.Get("since"), Until: q.Get("until")}})
}
