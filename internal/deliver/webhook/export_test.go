package webhook

import "fmt"

// ForgetIdleHosts fills every pool of n with hosts until it forgets those
// with no connection open, as it does once it knows maxHosts hosts.
func ForgetIdleHosts(n *Notifier) {
	pools := []*pool{n.clients.https}
	if n.clients.plain != nil {
		pools = append(pools, n.clients.plain)
	}
	for _, p := range pools {
		for i := 0; i <= maxHosts; i++ {
			p.hostOf(fmt.Sprintf("filler-%d.example", i), "443")
		}
	}
}

// FileStamp is fileStamp, what a route's client certificate files are
// known by.
var FileStamp = fileStamp
