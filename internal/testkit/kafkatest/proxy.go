package kafkatest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy in front of one or more brokers that can drop every
// connection on demand, for fault tests. A cluster started with WithProxy
// advertises the proxy's addresses, so every client connection, including
// those to partition leaders and group coordinators, goes through it.
type Proxy struct {
	mu      sync.Mutex
	links   []*link
	conns   map[net.Conn]struct{}
	blocked bool
	closed  bool
	wg      sync.WaitGroup
}

type link struct {
	ln       net.Listener
	upstream string
}

// NewProxy returns a Proxy with no links; Cleanup closes it.
func NewProxy(t testing.TB) *Proxy {
	p := &Proxy{conns: make(map[net.Conn]struct{})}
	t.Cleanup(p.Close)
	return p
}

// Listen opens a new proxy address on 127.0.0.1 and returns its index in
// Addrs; it forwards to the upstream set with SetUpstream.
func (p *Proxy) Listen() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	l := &link{ln: ln}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.links = append(p.links, l)
	p.wg.Go(func() { p.accept(l) })
	return len(p.links) - 1, nil
}

// SetUpstream points link i at the broker address upstream.
func (p *Proxy) SetUpstream(i int, upstream string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.links[i].upstream = upstream
}

// Addrs returns the proxy's client-facing addresses.
func (p *Proxy) Addrs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.links))
	for i, l := range p.links {
		out[i] = l.ln.Addr().String()
	}
	return out
}

// DropAll closes every open connection; clients reconnect.
func (p *Proxy) DropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// Block drops every connection and refuses new ones until Unblock: the
// brokers look down.
func (p *Proxy) Block() {
	p.mu.Lock()
	p.blocked = true
	p.mu.Unlock()
	p.DropAll()
}

// Unblock accepts connections again.
func (p *Proxy) Unblock() {
	p.mu.Lock()
	p.blocked = false
	p.mu.Unlock()
}

// Close stops the proxy and drops every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	for _, l := range p.links {
		_ = l.ln.Close()
	}
	p.mu.Unlock()
	p.DropAll()
	p.wg.Wait()
}

func (p *Proxy) accept(l *link) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		upstream, blocked, closed := l.upstream, p.blocked, p.closed
		if !blocked && !closed {
			p.conns[c] = struct{}{}
		}
		p.mu.Unlock()
		if blocked || closed || upstream == "" {
			_ = c.Close()
			continue
		}
		p.wg.Go(func() { p.pipe(c, upstream) })
	}
}

func (p *Proxy) pipe(c net.Conn, upstream string) {
	defer p.forget(c)
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.closed || p.blocked {
		p.mu.Unlock()
		_ = u.Close()
		_ = c.Close()
		return
	}
	p.conns[u] = struct{}{}
	p.mu.Unlock()
	defer p.forget(u)
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src) // ends when either side is dropped
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go cp(u, c)
	go cp(c, u)
	<-done
	<-done
}

func (p *Proxy) forget(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}
