package app

// ResignBeforeWrite lets a test change the subscribers topic between
// Resign's read of the records it vouches for and its first write;
// ResignAfterWrite lets it stop the run after its last write (a process
// that dies there).
var ResignBeforeWrite, ResignAfterWrite = &resignBeforeWrite, &resignAfterWrite

// BindingsEvery lets a test make the fan-out's passes over the alert-ids
// topic (keepBindings) come sooner than hourly.
var BindingsEvery = &bindingsEvery
