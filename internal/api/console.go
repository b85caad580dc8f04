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
)

// web holds the console's templates and its static script and style.
//
//go:embed web/*.html web/static/*
var web embed.FS

// pages are the console's parsed templates.
type pages struct {
	compose, status *template.Template
	static          fs.FS
}

// pageData is what a console page renders. html/template escapes every
// field for the context it appears in.
type pageData struct {
	Title   string
	Page    string
	ID      string // the alert id on the status page, as given
	Valid   bool   // whether ID is a well-formed alert id
	Problem string
}

// mustPages parses the embedded templates; they are part of the binary,
// so a failure is a programming error.
func mustPages() *pages {
	parse := func(page string) *template.Template {
		return template.Must(template.New(page).ParseFS(web, "web/layout.html", "web/"+page+".html"))
	}
	static, err := fs.Sub(web, "web/static")
	if err != nil {
		panic("api: console assets: " + err.Error())
	}
	return &pages{compose: parse("compose"), status: parse("status"), static: static}
}

// register adds the console's routes to mux.
func (p *pages) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", p.serveCompose)
	mux.HandleFunc("GET /status", p.serveLookup)
	mux.HandleFunc("GET /status/{id}", p.serveStatus)
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

// render executes t into a buffer first, so that a template error gives
// a clean 500 rather than half a page.
func render(w http.ResponseWriter, status int, t *template.Template, d pageData) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", d); err != nil {
		http.Error(w, "render page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// serveCompose renders the page to write, preview and publish an alert.
func (p *pages) serveCompose(w http.ResponseWriter, r *http.Request) {
	render(w, http.StatusOK, p.compose, pageData{Title: "New alert", Page: "compose"})
}

// serveLookup renders the status lookup form, or sends a submitted id on
// to its status page.
func (p *pages) serveLookup(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if id == "" {
		render(w, http.StatusOK, p.status, pageData{Title: "Alert status", Page: "status"})
		return
	}
	if !alerts.ValidID(id) {
		render(w, http.StatusNotFound, p.status, pageData{Title: "Alert status", Page: "status", ID: id,
			Problem: "That is not an alert id: ids are letters, digits, '.', '_' and '-', at most 64."})
		return
	}
	http.Redirect(w, r, "/status/"+url.PathEscape(id), http.StatusSeeOther)
}

// serveStatus renders the status page of one alert; the page's script
// polls the API for the deliveries.
func (p *pages) serveStatus(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d := pageData{Title: "Alert " + id, Page: "status", ID: id, Valid: alerts.ValidID(id)}
	status := http.StatusOK
	if !d.Valid {
		d.Problem = "That is not an alert id: ids are letters, digits, '.', '_' and '-', at most 64."
		status = http.StatusNotFound
	}
	render(w, status, p.status, d)
}
