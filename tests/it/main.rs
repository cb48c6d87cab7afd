//! Integration tests: the real server on port 0 with a temporary database.

mod support;
