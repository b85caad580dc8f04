package deliver

import "sync"

// workers runs the runner's attempts on at most max goroutines, started
// as attempts are dispatched and kept until stop. An attempt thus neither
// starts a goroutine nor grows a new goroutine's stack to the depth of
// net/http's round trip (in herald bench's webhook run, goroutine starts
// and stack growth were about 4% of the process's CPU time). Work waits
// in an unbounded FIFO queue: submit never blocks, so that a sequence
// dispatches its whole batch and starts waiting for it (Hold, hand-off)
// whatever the endpoints do.
type workers struct {
	max int

	mu      sync.Mutex
	cond    sync.Cond
	queue   []func()
	head    int // queue[head:] is waiting
	running int // goroutines started and not yet ended
	idle    int // goroutines waiting in cond.Wait
	stopped bool
	done    sync.WaitGroup
}

func newWorkers(max int) *workers {
	w := &workers{max: max}
	w.cond.L = &w.mu
	return w
}

// submit queues f; a worker runs it as soon as one is free.
func (w *workers) submit(f func()) {
	w.mu.Lock()
	w.queue = append(w.queue, f)
	switch {
	case w.idle > 0:
		w.idle-- // this worker is spoken for
		w.cond.Signal()
	case w.running < w.max:
		w.running++
		w.done.Add(1)
		go w.work()
	}
	w.mu.Unlock()
}

// work runs queued functions until stop.
func (w *workers) work() {
	defer w.done.Done()
	w.mu.Lock()
	for {
		if w.head < len(w.queue) {
			f := w.queue[w.head]
			w.queue[w.head] = nil
			w.head++
			switch {
			case w.head == len(w.queue):
				w.queue, w.head = w.queue[:0], 0
			case w.head >= 256 && 2*w.head >= len(w.queue):
				// A queue that never empties: drop what was taken.
				n := copy(w.queue, w.queue[w.head:])
				clear(w.queue[n:])
				w.queue, w.head = w.queue[:n], 0
			}
			w.mu.Unlock()
			f()
			w.mu.Lock()
			continue
		}
		if w.stopped {
			w.running--
			w.mu.Unlock()
			return
		}
		w.idle++
		w.cond.Wait()
	}
}

// stop lets the workers finish what is queued and running, waits for
// them, and leaves w ready to start workers again.
func (w *workers) stop() {
	w.mu.Lock()
	w.stopped = true
	w.idle = 0
	w.cond.Broadcast()
	w.mu.Unlock()
	w.done.Wait()
	w.mu.Lock()
	w.stopped = false
	w.mu.Unlock()
}
