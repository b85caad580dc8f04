package email

// Renders returns how many renderings n has made, for tests that check
// that one content is rendered once however many recipients it has.
func Renders(n *Notifier) uint64 { return n.renders.Load() }
