package app

// ResignBeforeWrite lets a test change the subscribers topic between
// Resign's read of the records it vouches for and its first write;
// ResignAfterWrite lets it stop the run after its last write (a process
// that dies there).
var ResignBeforeWrite, ResignAfterWrite = &resignBeforeWrite, &resignAfterWrite
