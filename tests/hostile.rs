//! Hostile input: what a record, a file or a message written by the people we watch
//! can do to the reader, the engine and the worker, and the limits that hold.
