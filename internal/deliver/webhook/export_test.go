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

// FileStamp is fileStamp, by which clients.cert knows whether to read a
// client certificate's files again.
var FileStamp = fileStamp

// MTLSPools is how many client-certificate pools n holds.
func MTLSPools(n *Notifier) int {
	n.clients.mu.Lock()
	defer n.clients.mu.Unlock()
	return len(n.clients.mtls)
}

// LimitCertNames makes n remember the files of at most size pairs of
// client certificate names (maxCertNames), forgetting what it knows.
func LimitCertNames(n *Notifier, size int) {
	c := n.clients
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names.Purge()
	c.names = newNames(size, c.evicted)
}
