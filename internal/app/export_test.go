package app

// ResignBeforeWrite lets a test change the subscribers topic between
// Resign's last check of a batch and its write of that batch.
var ResignBeforeWrite = &resignBeforeWrite
